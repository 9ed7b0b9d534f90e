//! What the users reported: one map of outcomes, the errors by message, and what came back over
//! HTTP. Used for the outcome tables only; verdicts come from the database ([`super::verdict`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::metrics::Latencies;
use crate::strategy::StrategyStats;
use crate::timeline::Track;

/// Users by outcome, keyed by [`Outcome::kind`] (`created`, `sold_out`, …), and the users that
/// failed by their error message. One map, so that a new outcome needs no new field in every
/// place that adds, merges or prints a tally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub outcomes: BTreeMap<String, u32>,
    /// Error message → how many users failed with it.
    pub errors: BTreeMap<String, u32>,
}

impl Tally {
    pub fn add(&mut self, result: &Result<Outcome, BookingError>) {
        match result {
            Ok(outcome) => *self.outcomes.entry(outcome.kind().to_owned()).or_default() += 1,
            Err(error) => self.add_error(error.to_string()),
        }
    }

    pub fn add_error(&mut self, message: String) {
        *self.errors.entry(message).or_default() += 1;
    }

    /// Users with this outcome ([`Outcome::kind`]).
    pub fn count(&self, kind: &str) -> u32 {
        self.outcomes.get(kind).copied().unwrap_or(0)
    }

    /// Successes the target acknowledged: bookings created (booking-cli's own strategies and
    /// `serve`) or a success status of someone else's endpoint (`race`). Each must be found in
    /// the database, or the verdict says it is not.
    pub fn successes(&self) -> u32 {
        self.sum_of(Outcome::kind_is_success)
    }

    /// Users refused, whatever the reason (sold out, lock busy, retries, fenced, on hold,
    /// payment failed, hold expired, a refusal status of the target's own).
    pub fn refused(&self) -> u32 {
        self.sum_of(Outcome::kind_is_refusal)
    }

    /// Users whose outcome's kind `is` says yes to.
    fn sum_of(&self, is: fn(&str) -> bool) -> u32 {
        self.outcomes
            .iter()
            .filter(|(kind, _)| is(kind))
            .map(|(_, n)| n)
            .sum()
    }

    /// Refused because the lock could not be relied on: not acquired, or no longer valid at
    /// commit (one column of the outcome tables).
    pub fn lock_refusals(&self) -> u32 {
        self.count("lock_not_acquired") + self.count("lock_expired")
    }

    pub fn error_count(&self) -> u32 {
        self.errors.values().sum()
    }

    /// Adds another process's (or lane's) tally.
    pub fn merge(&mut self, other: &Tally) {
        for (kind, n) in &other.outcomes {
            *self.outcomes.entry(kind.clone()).or_default() += n;
        }
        for (message, n) in &other.errors {
            *self.errors.entry(message.clone()).or_default() += n;
        }
    }

    /// One line on what the users reported, for a run whose final state could not be read.
    pub fn line(&self, users: u32) -> String {
        let mut line = format!(
            "{users} users: {} created, {} refused, {} failed",
            self.successes(),
            self.refused(),
            self.error_count()
        );
        if let Some((message, count)) = self.errors.iter().max_by_key(|(_, count)| **count) {
            line.push_str(&format!(" ({count} × {message})"));
        }
        line
    }
}

/// What a target counted over all its users: the strategy's own counters (locks, retries) for
/// booking-cli's strategies, and whatever a remote target counts in terms of its own (its
/// transport's answers and delivery: `sync::HttpStats`) — carried through the runner unopened,
/// for the reports, which know the target.
#[derive(Debug, Clone, Default)]
pub struct TargetStats {
    pub strategy: StrategyStats,
    pub remote: Option<Box<dyn Counts>>,
}

/// A target's own counters, which the runner merges (one per process with `--processes`) but
/// does not read: each target defines what it counts.
pub trait Counts: std::fmt::Debug + Send + Sync + 'static {
    /// Adds `other`'s counts (of the same kind; another kind is ignored).
    fn merge_from(&mut self, other: &dyn Counts);
    fn clone_box(&self) -> Box<dyn Counts>;
    /// For the reader that knows the target: `downcast_ref` to its type.
    fn as_any(&self) -> &dyn std::any::Any;
}

impl Clone for Box<dyn Counts> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

impl TargetStats {
    pub fn merge(&mut self, other: &TargetStats) {
        self.strategy.merge(&other.strategy);
        match (&mut self.remote, &other.remote) {
            (Some(mine), Some(theirs)) => mine.merge_from(theirs.as_ref()),
            (None, Some(theirs)) => self.remote = Some(theirs.clone_box()),
            (_, None) => {}
        }
    }

    /// The remote target's counts, as the type the reader expects; `None` for another target.
    pub fn remote<T: Counts>(&self) -> Option<&T> {
        self.remote
            .as_deref()
            .and_then(|counts| counts.as_any().downcast_ref::<T>())
    }
}

/// What the users of one race reported (one process's share, with `--processes`).
#[derive(Debug, Clone, Default)]
pub struct RaceResult {
    pub tally: Tally,
    pub latency: Latencies,
    /// The same latencies split by outcome (`created`, `sold_out`, …, `error`): refusals and
    /// bookings rarely take the same time, and one distribution hides it.
    pub latency_by_outcome: BTreeMap<String, Latencies>,
    /// Users who were refused (not created, not failed): the candidates for under-selling.
    pub refused: Vec<BookingRequest>,
    pub stats: TargetStats,
    /// From the first user's start to the last user's end.
    pub elapsed: Duration,
    /// Every user's phases, when recorded (`--timeline`, `--trace`, `--report`).
    pub tracks: Vec<Track>,
}

impl RaceResult {
    /// Adds another process's (or lane's) share.
    pub fn merge(&mut self, other: RaceResult) {
        self.tally.merge(&other.tally);
        self.latency.merge(&other.latency);
        for (outcome, latency) in &other.latency_by_outcome {
            self.latency_by_outcome
                .entry(outcome.clone())
                .or_default()
                .merge(latency);
        }
        self.refused.extend(other.refused);
        self.tracks.extend(other.tracks);
        self.stats.merge(&other.stats);
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn every_outcome_is_counted_in_one_map_and_refusals_include_reserves() {
        let night = NaiveDate::from_ymd_opt(2024, 12, 25).unwrap_or_default();
        let mut tally = Tally::default();
        for outcome in [
            Outcome::Created { booking_id: 1 },
            Outcome::SoldOut { night },
            Outcome::OnHold { night },
            Outcome::PaymentFailed,
            Outcome::HoldExpired,
            Outcome::Declined,
            Outcome::Acknowledged,
            Outcome::Interrupted,
        ] {
            tally.add(&Ok(outcome));
        }
        assert_eq!(tally.successes(), 2);
        assert_eq!(tally.refused(), 5, "{tally:?}");
        assert_eq!(tally.count("interrupted"), 1);
        let mut twice = tally.clone();
        twice.merge(&tally);
        assert_eq!(twice.refused(), 10);
        assert!(twice.line(16).contains("10 refused"), "{}", twice.line(16));
    }
}
