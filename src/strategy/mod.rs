//! The booking strategies, each in its own file behind one trait.
//!
//! A strategy is one way of running *check availability → slow work → increment
//! `booked_count` → insert the booking* for one user. They all use the same repository steps
//! ([`BookingTx`](crate::repo::BookingTx)); what differs is what protects the window between the
//! check and the write. Adding a strategy is one new file here, one [`Mode`] variant and one arm
//! in [`build`].

mod locked;
mod naive;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::ValueEnum;
use serde::Serialize;

pub use locked::Locked;
pub use naive::Naive;

use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::lock::{LockPolicy, LockStats, RedisLock};
use crate::repo::Repo;

/// One way of booking.
#[async_trait]
pub trait Strategy: Send + Sync {
    /// Books for one user: `Ok` with the outcome (created, or refused), `Err` when it failed.
    /// On `Err`, nothing of this booking is left in the database.
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError>;

    /// What the strategy's lock did so far, for strategies that take one.
    fn lock_stats(&self) -> Option<LockStats> {
        None
    }
}

/// The strategies, as named on the command line (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Check, then write, with nothing in between: overbooks under concurrency.
    Naive,
    /// The naive transaction inside a Redis lock on every night of the stay.
    Locked,
}

impl Mode {
    /// Whether the strategy needs Redis (so that the others never connect to it).
    pub fn needs_redis(self) -> bool {
        match self {
            Mode::Naive => false,
            Mode::Locked => true,
        }
    }

    /// What a `stress` run of this strategy is expected to show when `--expect` is not given.
    pub fn default_expectation(self) -> Expectation {
        match self {
            Mode::Naive => Expectation::Overbooking,
            Mode::Locked => Expectation::Safe,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Naive => "naive",
            Mode::Locked => "locked",
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
    /// The database ends overbooked: the race was reproduced.
    Overbooking,
    /// The database ends consistent and no user hit an error.
    Safe,
}

/// Everything a strategy may need; each takes what it uses.
#[derive(Clone)]
pub struct Context {
    pub repo: Repo,
    /// Present when the mode [needs Redis](Mode::needs_redis).
    pub lock: Option<RedisLock>,
    pub lock_policy: LockPolicy,
    /// The simulated slow work between the check and the write (`--hold-ms`).
    pub hold: Duration,
}

/// Why a strategy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("--mode {0} needs Redis, but no Redis connection was given")]
    NeedsRedis(Mode),
}

/// The strategy for `mode`.
pub fn build(mode: Mode, ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    Ok(match mode {
        Mode::Naive => Arc::new(Naive::new(ctx.repo, ctx.hold)),
        Mode::Locked => {
            let lock = ctx.lock.ok_or(BuildError::NeedsRedis(mode))?;
            Arc::new(Locked::new(ctx.repo, lock, ctx.lock_policy, ctx.hold))
        }
    })
}
