//! The booking strategies, each in its own file behind one trait, and the registry that lists
//! them.
//!
//! A strategy is one way of running *check availability → slow work → increment
//! `booked_count` → insert the booking* for one user. They all use the same repository steps
//! ([`BookingTx`](crate::repo::BookingTx)); what differs is what protects the window between the
//! check and the write.
//!
//! **Adding a strategy is one file and one line.** The file holds the strategy behind
//! [`Strategy`] and its [`Spec`] — its name, what it needs, its steps, what it is expected to
//! show, how it is built. The line registers it in [`registry!`] below. The command line
//! (`--mode`), `--mode all`, `interleave`, `booking-cli strategies` (which the scripts read) and
//! the lab tests all follow the registry.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::backoff::Backoff;
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::lock::redlock::RedLock;
use crate::lock::{LockPolicy, LockStats, RedisLock};
use crate::repo::{BookingTx, Repo};
use crate::steps;
use crate::stop::Stop;

/// Declares the strategy modules and the [`Mode`] of each, in the order `--mode all` runs
/// them: `Variant => module`. The module must define `pub(super) const SPEC: Spec`.
macro_rules! registry {
    ($($variant:ident => $module:ident),* $(,)?) => {
        $(mod $module;)*

        /// The strategies, as named on the command line (`--mode`): one per registered file.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Mode {
            $($variant),*
        }

        impl Mode {
            /// Every strategy, in the order `--mode all` runs them.
            pub const ALL: &'static [Mode] = &[$(Mode::$variant),*];

            /// Everything that describes the strategy.
            pub fn spec(self) -> &'static Spec {
                match self {
                    $(Mode::$variant => &$module::SPEC),*
                }
            }
        }
    };
}

registry! {
    Naive => naive,
    LostUpdate => lost_update,
    Mutex => mutex,
    Locked => locked,
    Fenced => fenced,
    Redlock => redlock,
    RowLock => row_lock,
    Atomic => atomic,
    OneStatement => one_statement,
    Reserve => reserve,
    Advisory => advisory,
    Serializable => serializable,
}

/// What describes a strategy, in its own file.
#[derive(Debug)]
pub struct Spec {
    /// The `--mode` value (kebab-case).
    pub name: &'static str,
    /// One line: what protects the booking, or what goes wrong (`--help`, `strategies`).
    pub summary: &'static str,
    /// The servers it needs besides PostgreSQL.
    pub needs: Needs,
    /// The boundaries its code marks with [`steps::step`], in order: where `interleave` pauses
    /// it. A booking refused early skips the rest; a retried one starts again from the first.
    pub steps: &'static [&'static str],
    /// What a race of it is expected to show.
    pub shows: Shows,
    /// It waits for something another user holds — a Redis lock, or (`reserve`) a room on
    /// hold — under the lock policy (`--lock-ttl-ms`, `--lock-retries`, `--lock-wait-ms`). With
    /// fixed retries (no deadline) it is known to refuse users while rooms are left (see
    /// [`StressConfig::under_selling_expected`](crate::run::StressConfig::under_selling_expected)).
    pub waits_with_lock_policy: bool,
    /// It runs the slow work (`--hold-ms`) somewhere; `one-statement` has no place for it.
    pub slow_work: bool,
    /// Builds it from what a run has.
    pub build: fn(Context) -> Result<Arc<dyn Strategy>, BuildError>,
}

/// The servers a strategy connects to, besides PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Needs {
    Postgres,
    /// The first `--redis-url`.
    Redis,
    /// Every `--redis-url` (a majority of them).
    Redlock,
}

/// What a race of a strategy shows by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shows {
    /// The anomaly: it is unprotected.
    Overbooking,
    /// Nothing oversold, in any number of processes.
    Safe,
    /// Safe within one process, overbooking across several (`--processes`).
    SafeInOneProcess,
}

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

    /// Gets ready for `connections` users booking at once, before the start barrier (e.g.
    /// prepares its statements on every pooled connection). Most strategies need nothing.
    async fn warm_up(&self, _connections: u32) -> Result<(), BookingError> {
        Ok(())
    }

    /// How many users may book at once given `pooled` connections to book on: one each, unless
    /// the strategy holds no connection through its slow work (`reserve`).
    fn lanes(&self, pooled: u32) -> u32 {
        pooled
    }
}

/// Counters a strategy keeps over all its users.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StrategyStats {
    /// What the Redis lock did (`locked`).
    pub lock: Option<LockStats>,
    /// Transactions aborted by PostgreSQL and run again (`serializable`).
    pub tx_retries: Option<u64>,
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
    }
}

/// The slow work of a booking (a payment, a fraud check: `--hold-ms`), marked as its own phase
/// for the timeline. No work is no wait: a zero-length tokio sleep would still go through the
/// timer wheel and wait for its next millisecond tick.
async fn slow_work(hold: Duration) {
    steps::mark("work");
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
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
        | Outcome::OnHold { .. }
        | Outcome::PaymentFailed
        | Outcome::HoldExpired
        | Outcome::Interrupted
        | Outcome::Accepted { .. }
        | Outcome::Rejected { .. } => {}
    }
    Ok(outcome)
}

impl Mode {
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The strategy with this `--mode` name.
    pub fn named(name: &str) -> Option<Mode> {
        Mode::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// Whether the strategy needs Redis (so that the others never connect to it).
    pub fn needs_redis(self) -> bool {
        self.spec().needs == Needs::Redis
    }

    /// Whether the strategy locks over every Redis URL given (Redlock).
    pub fn needs_redlock(self) -> bool {
        self.spec().needs == Needs::Redlock
    }

    /// Whether the strategy waits under the lock policy (see [`Spec::waits_with_lock_policy`]).
    pub fn waits_with_lock_policy(self) -> bool {
        self.spec().waits_with_lock_policy
    }

    /// The steps of one booking (see [`Spec::steps`]).
    pub fn steps(self) -> &'static [&'static str] {
        self.spec().steps
    }

    /// What a `stress` run of this strategy over `processes` processes is expected to show when
    /// `--expect` is not given (see [`Shows`]).
    pub fn default_expectation(self, processes: u32) -> Expectation {
        match self.spec().shows {
            Shows::Overbooking => Expectation::Overbooking,
            Shows::SafeInOneProcess if processes > 1 => Expectation::Overbooking,
            Shows::Safe | Shows::SafeInOneProcess => Expectation::Safe,
        }
    }
}

/// `--mode` values and their help, from the registry.
impl clap::ValueEnum for Mode {
    fn value_variants<'a>() -> &'a [Self] {
        Mode::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.spec().summary))
    }
}

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a run is supposed to demonstrate (`--expect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
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

/// How aborted transactions are retried (`serializable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub retries: u32,
    pub backoff: Backoff,
}

/// The simulated payment of `reserve`: how often it fails (`--fail-rate`), drawn from an RNG
/// seeded with `seed` (`--fail-seed`), so that a run's failures can be reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Payments {
    /// Probability in [0, 1] that one payment fails.
    pub fail_rate: f64,
    pub seed: u64,
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
    /// How `reserve`'s simulated payments fail.
    pub payments: Payments,
    /// The simulated slow work between the check and the write (`--hold-ms`).
    pub hold: Duration,
    /// Ctrl-C: retry loops give up at their next pause.
    pub stop: Stop,
}

/// Why a strategy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("--mode {0} needs Redis, but no Redis connection was given")]
    NeedsRedis(&'static str),
}

/// The strategy for `mode`, built by its [`Spec`]. Waits for a Redis lock end on `stop`
/// (Ctrl-C) whichever strategy takes them.
pub fn build(mode: Mode, mut ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    ctx.lock = ctx.lock.map(|lock| lock.with_stop(ctx.stop.clone()));
    ctx.redlock = ctx.redlock.map(|redlock| redlock.for_run(ctx.stop.clone()));
    (mode.spec().build)(ctx)
}
