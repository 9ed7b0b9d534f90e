//! The booking strategies, each in its own file behind one trait.
//!
//! A strategy is one way of running *check availability → slow work → increment
//! `booked_count` → insert the booking* for one user. They all use the same repository steps
//! ([`BookingTx`](crate::repo::BookingTx)); what differs is what protects the window between the
//! check and the write. Adding a strategy is one new file here, one [`Mode`] variant and one arm
//! in [`build`].

mod advisory;
mod atomic;
mod fenced;
mod locked;
mod lost_update;
mod mutex;
mod naive;
mod redlock;
mod row_lock;
mod serializable;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::ValueEnum;
use serde::Serialize;

pub use advisory::Advisory;
pub use atomic::Atomic;
pub use fenced::Fenced;
pub use locked::Locked;
pub use lost_update::LostUpdate;
pub use mutex::InProcessMutex;
pub use naive::Naive;
pub use redlock::Redlock;
pub use row_lock::RowLock;
pub use serializable::{RetryPolicy, Serializable};

use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::lock::redlock::RedLock;
use crate::lock::{LockPolicy, LockStats, RedisLock};
use crate::repo::{BookingTx, Repo};
use crate::steps;
use crate::stop::Stop;

/// One way of booking.
#[async_trait]
pub trait Strategy: Send + Sync {
    /// Books for one user: `Ok` with the outcome (created, or refused), `Err` when it failed.
    /// On `Err`, nothing of this booking is left in the database.
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError>;

    /// What the strategy counted so far (locks, retries), for those that count anything.
    fn stats(&self) -> StrategyStats {
        StrategyStats::default()
    }

    /// Gets ready for `connections` users booking at once, before the start barrier (the HTTP
    /// client opens its keep-alive connections). Most strategies need nothing.
    async fn warm_up(&self, _connections: u32) -> Result<(), BookingError> {
        Ok(())
    }

    /// How many users may book at once, when it is not one per pooled database connection
    /// (over HTTP, the server's connections are not the runner's).
    fn lanes(&self) -> Option<u32> {
        None
    }
}

/// Counters a strategy keeps over all its users.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StrategyStats {
    /// What the Redis lock did (`locked`).
    pub lock: Option<LockStats>,
    /// Transactions aborted by PostgreSQL and run again (`serializable`).
    pub tx_retries: Option<u64>,
    /// Status codes and transport errors (`stress --target`).
    pub http: Option<crate::http::client::HttpStats>,
}

impl StrategyStats {
    /// Adds another process's counters (see [`LockStats::merge`]).
    pub fn merge(&mut self, other: &StrategyStats) {
        self.lock = match (self.lock, other.lock) {
            (Some(mut mine), Some(theirs)) => {
                mine.merge(&theirs);
                Some(mine)
            }
            (mine, theirs) => mine.or(theirs),
        };
        self.tx_retries = match (self.tx_retries, other.tx_retries) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.http = match (self.http.take(), &other.http) {
            (Some(mut mine), Some(theirs)) => {
                mine.merge(theirs);
                Some(mine)
            }
            (mine, theirs) => mine.or_else(|| theirs.clone()),
        };
    }
}

/// Commits and logs what was decided. Committing after a refusal is harmless (the transaction
/// only read) and keeps every strategy's ending the same.
async fn commit(tx: BookingTx, outcome: Outcome) -> Result<Outcome, BookingError> {
    steps::step("commit").await;
    tx.commit().await?;
    match &outcome {
        Outcome::Created { booking_id } => tracing::info!(booking_id, "booking created"),
        Outcome::SoldOut { night } => tracing::info!(%night, "sold out"),
        Outcome::LockNotAcquired { .. }
        | Outcome::RetriesExhausted { .. }
        | Outcome::FencedOut { .. }
        | Outcome::LockExpired { .. }
        | Outcome::Interrupted => {}
    }
    Ok(outcome)
}

/// The strategies, as named on the command line (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Check, then write, with nothing in between: overbooks under concurrency.
    Naive,
    /// Like naive, but writes the value it read (read + 1): loses updates.
    LostUpdate,
    /// The naive transaction inside a Redis lock on every night of the stay.
    Locked,
    /// SELECT … FOR UPDATE on every night's row before the check.
    RowLock,
    /// One conditional UPDATE per night (booked_count < total_inventory), then the insert.
    Atomic,
    /// pg_advisory_xact_lock per room-night before the check.
    Advisory,
    /// The naive transaction at SERIALIZABLE, retried on serialization failure and deadlock.
    Serializable,
    /// An in-process mutex per room-night: safe in one process, not across several.
    Mutex,
    /// The Redis lock plus a fencing token checked by the database: survives expired locks.
    Fenced,
    /// A Redlock over several Redis instances (--redis-url repeated): held on a majority.
    Redlock,
}

impl Mode {
    /// Every strategy, in the order `--mode all` runs them.
    pub const ALL: [Mode; 10] = [
        Mode::Naive,
        Mode::LostUpdate,
        Mode::Mutex,
        Mode::Locked,
        Mode::Fenced,
        Mode::Redlock,
        Mode::RowLock,
        Mode::Atomic,
        Mode::Advisory,
        Mode::Serializable,
    ];

    /// Whether the strategy needs Redis (so that the others never connect to it).
    pub fn needs_redis(self) -> bool {
        matches!(self, Mode::Locked | Mode::Fenced)
    }

    /// Whether the strategy waits for a Redis lock (single-instance or Redlock), and so shares
    /// the lock policy's behaviour — with fixed retries, under-selling.
    pub fn takes_redis_lock(self) -> bool {
        matches!(self, Mode::Locked | Mode::Fenced | Mode::Redlock)
    }

    /// Whether the strategy locks over every Redis URL given (Redlock).
    pub fn needs_redlock(self) -> bool {
        self == Mode::Redlock
    }

    /// What a `stress` run of this strategy over `processes` processes is expected to show when
    /// `--expect` is not given: the two unprotected strategies show their anomaly, and so does
    /// the in-process mutex across processes; every other one is safe.
    pub fn default_expectation(self, processes: u32) -> Expectation {
        match self {
            Mode::Naive | Mode::LostUpdate => Expectation::Overbooking,
            Mode::Mutex if processes > 1 => Expectation::Overbooking,
            _ => Expectation::Safe,
        }
    }

    /// The steps of one booking, in the order the strategy runs them: the boundaries it marks
    /// with [`steps::step`], where `interleave` pauses it. A booking refused early skips the
    /// rest (a sold-out check goes straight to `commit`); a retried one starts again from the
    /// first step of its transaction.
    pub fn steps(self) -> &'static [&'static str] {
        match self {
            Mode::Naive | Mode::LostUpdate | Mode::Serializable => &["check", "write", "commit"],
            Mode::Locked | Mode::Mutex | Mode::Redlock => {
                &["lock", "check", "write", "commit", "unlock"]
            }
            Mode::RowLock => &["lock-rows", "check", "write", "commit"],
            Mode::Atomic => &["update", "insert", "commit"],
            Mode::Advisory => &["lock", "check", "write", "commit"],
            Mode::Fenced => &["lock", "claim", "check", "write", "commit", "unlock"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Naive => "naive",
            Mode::LostUpdate => "lost-update",
            Mode::Locked => "locked",
            Mode::RowLock => "row-lock",
            Mode::Atomic => "atomic",
            Mode::Advisory => "advisory",
            Mode::Serializable => "serializable",
            Mode::Mutex => "mutex",
            Mode::Fenced => "fenced",
            Mode::Redlock => "redlock",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a run is supposed to demonstrate (`--expect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expectation {
    /// The database ends overbooked (oversold, or its counter drifted): the race was reproduced.
    Overbooking,
    /// The database ends consistent, no user hit an error, and nobody was refused while rooms
    /// were left (except by `locked` with a fixed retry budget, which is known to under-sell).
    Safe,
    /// Nothing in particular: a measurement (the default of the unprotected strategies under
    /// `--duration`, where slots are spread and inventory is large).
    Any,
}

/// Everything a strategy may need; each takes what it uses.
#[derive(Clone)]
pub struct Context {
    pub repo: Repo,
    /// Present when the mode [needs Redis](Mode::needs_redis).
    pub lock: Option<RedisLock>,
    /// Present when the mode [needs Redlock](Mode::needs_redlock).
    pub redlock: Option<RedLock>,
    pub lock_policy: LockPolicy,
    /// How `serializable` retries aborted transactions.
    pub retry: RetryPolicy,
    /// The simulated slow work between the check and the write (`--hold-ms`).
    pub hold: Duration,
    /// Ctrl-C: retry loops give up at their next pause.
    pub stop: Stop,
}

/// Why a strategy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("--mode {0} needs Redis, but no Redis connection was given")]
    NeedsRedis(Mode),
}

/// The strategy for `mode`.
pub fn build(mode: Mode, ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    let Context {
        repo,
        lock,
        redlock,
        lock_policy,
        retry,
        hold,
        stop,
    } = ctx;
    let lock = lock.map(|lock| lock.with_stop(stop.clone()));
    Ok(match mode {
        Mode::Naive => Arc::new(Naive::new(repo, hold)),
        Mode::LostUpdate => Arc::new(LostUpdate::new(repo, hold)),
        Mode::Locked => {
            let lock = lock.ok_or(BuildError::NeedsRedis(mode))?;
            Arc::new(Locked::new(repo, lock, lock_policy, hold))
        }
        Mode::RowLock => Arc::new(RowLock::new(repo, hold)),
        Mode::Atomic => Arc::new(Atomic::new(repo, hold)),
        Mode::Advisory => Arc::new(Advisory::new(repo, hold)),
        Mode::Serializable => Arc::new(Serializable::new(repo, hold, retry, stop)),
        Mode::Mutex => Arc::new(InProcessMutex::new(repo, hold)),
        Mode::Fenced => {
            let lock = lock.ok_or(BuildError::NeedsRedis(mode))?;
            Arc::new(Fenced::new(repo, lock, lock_policy, hold))
        }
        Mode::Redlock => {
            let redlock = redlock.ok_or(BuildError::NeedsRedis(mode))?;
            Arc::new(Redlock::new(repo, redlock.for_run(stop), lock_policy, hold))
        }
    })
}
