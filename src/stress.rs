//! The stress runner: many users, one slot, released together.
//!
//! Workers report, one collector aggregates, the verdict comes last — from the database:
//! 1. check the slot exists (nothing is written for a bad `--room`/`--from`), then prepare it;
//! 2. open every pooled connection before the race, so no user pays for a handshake after it;
//! 3. spawn one task per user; each waits on a [`Barrier`] so that all of them start their
//!    booking in the same instant — with `--hold-ms` longer than a check, every naive user's
//!    check happens before any user's write, which makes the race certain, not likely;
//! 4. each task sends its result on a channel; the collector tallies and drives the progress bar;
//! 5. the final state is **read back from PostgreSQL**, and the verdict is computed from it,
//!    never from the tallies.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::sync::{Barrier, mpsc};
use tokio::task::JoinSet;

use crate::db;
use crate::domain::{BookingRequest, Outcome, RoomId, Stay, UserId};
use crate::error::BookingError;
use crate::lock::{LockPolicy, LockStats};
use crate::repo::{NightState, Repo};
use crate::strategy::{Expectation, Mode, Strategy};

/// A validated `stress` run.
#[derive(Debug, Clone)]
pub struct StressConfig {
    pub mode: Mode,
    pub users: u32,
    pub room: RoomId,
    pub stay: Stay,
    /// `total_inventory` every night of the slot is set to before the run.
    pub inventory: i32,
    pub hold: Duration,
    pub lock_policy: LockPolicy,
    pub expect: Expectation,
}

/// What the users reported. Used for the outcome table only; verdicts come from [`NightState`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub created: u32,
    pub sold_out: u32,
    pub lock_not_acquired: u32,
    /// Error message → how many users failed with it.
    pub errors: BTreeMap<String, u32>,
}

impl Tally {
    fn add(&mut self, result: &Result<Outcome, BookingError>) {
        match result {
            Ok(Outcome::Created { .. }) => self.created += 1,
            Ok(Outcome::SoldOut { .. }) => self.sold_out += 1,
            Ok(Outcome::LockNotAcquired { .. }) => self.lock_not_acquired += 1,
            Err(error) => self.add_error(error.to_string()),
        }
    }

    fn add_error(&mut self, message: String) {
        *self.errors.entry(message).or_default() += 1;
    }

    pub fn error_count(&self) -> u32 {
        self.errors.values().sum()
    }
}

/// Everything a finished run knows.
#[derive(Debug, Clone)]
pub struct StressReport {
    pub config: StressConfig,
    pub tally: Tally,
    /// Every night of the slot, read from the database after the last user finished.
    pub nights: Vec<NightState>,
    /// What the lock did, for strategies that use one.
    pub lock: Option<LockStats>,
    /// From the first user's start to the last user's end.
    pub elapsed: Duration,
    /// Bookings of earlier runs that preparing the slot deleted.
    pub cleared_bookings: u64,
}

impl StressReport {
    /// Whether any night is overbooked (or its counter disagrees with its rows).
    pub fn overbooked(&self) -> bool {
        self.nights.iter().any(NightState::overbooked)
    }

    /// The night the one-line summary speaks of: the first overbooked one, else the first.
    pub fn headline_night(&self) -> Option<&NightState> {
        self.nights
            .iter()
            .find(|n| n.overbooked())
            .or_else(|| self.nights.first())
    }

    /// `OVERBOOKED` or `SAFE`.
    pub fn verdict(&self) -> &'static str {
        if self.overbooked() {
            "OVERBOOKED"
        } else {
            "SAFE"
        }
    }

    /// Whether the run showed what it was expected to. `safe` also requires that no user hit an
    /// error: twenty failed users leave a consistent database, but prove nothing.
    pub fn expectation_met(&self) -> bool {
        match self.config.expect {
            Expectation::Overbooking => self.overbooked(),
            Expectation::Safe => !self.overbooked() && self.tally.error_count() == 0,
        }
    }
}

/// One user's report to the collector.
struct UserResult {
    result: Result<Outcome, BookingError>,
    started: Instant,
    finished: Instant,
}

/// Runs the race described by `config` with `strategy`, on `repo`'s pool, and reads the verdict
/// from the database. `progress` advances once per finished user (pass a hidden bar for none).
pub async fn run(
    repo: &Repo,
    strategy: Arc<dyn Strategy>,
    config: &StressConfig,
    progress: &ProgressBar,
) -> Result<StressReport, BookingError> {
    repo.ensure_bookable(config.room, &config.stay).await?;
    let cleared_bookings = repo
        .prepare_slot(config.room, &config.stay, config.inventory)
        .await?;
    let connections = repo
        .pool()
        .options()
        .get_max_connections()
        .min(config.users);
    db::warm_up(repo.pool(), connections).await?;

    let (report, mut results) = mpsc::unbounded_channel::<UserResult>();
    let start_line = Arc::new(Barrier::new(config.users as usize));
    let mut users = JoinSet::new();
    for _ in 0..config.users {
        let strategy = Arc::clone(&strategy);
        let start_line = Arc::clone(&start_line);
        let report = report.clone();
        let request = BookingRequest {
            user: UserId::random(),
            room: config.room,
            stay: config.stay,
        };
        users.spawn(async move {
            start_line.wait().await;
            let started = Instant::now();
            let result = strategy.book(&request).await;
            // The collector outlives every sender; a failed send means it is gone, and so is
            // anyone to tell.
            let _ = report.send(UserResult {
                result,
                started,
                finished: Instant::now(),
            });
        });
    }
    drop(report);

    let mut tally = Tally::default();
    let mut first_start: Option<Instant> = None;
    let mut last_end: Option<Instant> = None;
    while let Some(user) = results.recv().await {
        tally.add(&user.result);
        first_start = Some(first_start.map_or(user.started, |t| t.min(user.started)));
        last_end = Some(last_end.map_or(user.finished, |t| t.max(user.finished)));
        progress.inc(1);
    }
    // A user task that panicked sent nothing; it still counts, as an error.
    while let Some(joined) = users.join_next().await {
        if let Err(join_error) = joined {
            tally.add_error(format!("user task failed: {join_error}"));
        }
    }
    progress.finish_and_clear();

    let nights = repo.slot_state(config.room, &config.stay).await?;
    let elapsed = match (first_start, last_end) {
        (Some(start), Some(end)) => end.saturating_duration_since(start),
        _ => Duration::ZERO,
    };
    Ok(StressReport {
        config: config.clone(),
        tally,
        nights,
        lock: strategy.lock_stats(),
        elapsed,
        cleared_bookings,
    })
}
