//! Running a race: a [`Target`] driven by the runner, judged from the database.
//!
//! - [`plan`]: who books what on booking-cli's schema, and what the run should show
//!   ([`StressConfig`]);
//! - [`runner`]: the [`Target`] trait and the runner — a burst released by one barrier, or the
//!   closed loop of `--duration`;
//! - [`tally`]: what the users reported, one map of outcomes;
//! - [`verdict`]: the invariant and its verdicts, shared by `stress`, `interleave` and `race`;
//! - [`judge`]: booking-cli's schema prepared before and read back after ([`StressReport`]).
//!
//! A run on booking-cli's schema goes:
//! 1. check the slot exists (nothing is written for a bad `--room`/`--from`), then prepare it;
//! 2. open every pooled connection before the race, so no user pays for a handshake after it;
//! 3. spawn one task per lane; each waits on a barrier so that all of them start their
//!    booking in the same instant — with `--hold-ms` longer than a check, every naive user's
//!    check happens before any user's write, which makes the race certain, not likely;
//! 4. each lane tallies its users' results where they happen;
//! 5. the final state is **read back from PostgreSQL**, and the verdict is computed from it,
//!    never from the tallies — and every success the users were told of must be found there.
//!
//! `race` drives the same runner with a target of someone else's ([`crate::targets::endpoint`])
//! and judges by the user's own SQL ([`crate::check_db`]).

pub mod judge;
pub mod plan;
pub mod runner;
pub mod tally;
pub mod verdict;

use std::sync::Arc;

use indicatif::ProgressBar;

pub use judge::{ProcessRow, StressReport, judge, prepare, runs_met};
pub use plan::StressConfig;
pub use runner::{Attempt, Burst, Target, Turn, race, sustain};
pub use tally::{Counts, RaceResult, Tally, TargetStats};
pub use verdict::Verdict;

use crate::chaos;
use crate::db;
use crate::error::BookingError;
use crate::lock::RedisLock;
use crate::repo::Repo;
use crate::stop::Stop;

/// Runs `config` against `target` (a strategy in this process, or `serve` over HTTP) on
/// booking-cli's schema, injecting `config.chaos` while the users run (`redis`: the servers
/// Redis faults hit).
pub async fn run_with_chaos(
    repo: &Repo,
    target: Arc<dyn Target>,
    redis: Vec<RedisLock>,
    config: &StressConfig,
    stop: &Stop,
    progress: &ProgressBar,
) -> Result<StressReport, BookingError> {
    let cleared = prepare(repo, config).await?;
    let connections = repo
        .pool()
        .options()
        .get_max_connections()
        .min(config.users);
    db::warm_up(repo.pool(), connections).await?;
    target.warm_up(target.lanes().min(config.users)).await?;
    let faults = chaos::start(&config.chaos, repo, redis, config.room).await?;
    let mut race = match config.duration {
        Some(duration) => sustain(target, config.users, duration, stop, progress).await,
        None => {
            let burst = Burst {
                users: config.users,
                first_user: 0,
                record: config.record,
            };
            race(target, burst, std::future::ready(()), stop, progress).await
        }
    };
    faults.stop(&mut race.stats.strategy).await;
    judge(repo, config, race, cleared).await
}
