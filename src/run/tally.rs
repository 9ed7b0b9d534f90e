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

/// What came back over HTTP: responses by status code, and requests that got none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpStats {
    /// Responses by status code.
    pub status_codes: BTreeMap<u16, u64>,
    /// Requests that got no response at all (refused, reset, timed out).
    pub transport_errors: u64,
    /// How the burst was released (`stress --target --sync`); `None`: each request sent whole
    /// over a keep-alive connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::sync::Sync>,
    /// Connections the server closed or reset before the release, reopened and pre-sent
    /// again so that the burst went out whole (`race`).
    #[serde(default)]
    pub reopened: u64,
    /// When each request's last byte was written, in µs on the client's clock (`race`).
    #[serde(skip)]
    pub releases_us: Vec<u64>,
    /// When each request arrived whole, in µs on the server's clock, as its
    /// `Server-Timing: arrival` said (servers that send it: `serve`).
    #[serde(skip)]
    pub arrivals_us: Vec<u64>,
}

impl HttpStats {
    pub fn merge(&mut self, other: &HttpStats) {
        for (status, count) in &other.status_codes {
            *self.status_codes.entry(*status).or_default() += count;
        }
        self.transport_errors += other.transport_errors;
        self.reopened += other.reopened;
        self.releases_us.extend(&other.releases_us);
        self.arrivals_us.extend(&other.arrivals_us);
    }

    pub fn count(&mut self, status: Option<u16>) {
        match status {
            Some(status) => *self.status_codes.entry(status).or_default() += 1,
            None => self.transport_errors += 1,
        }
    }
}

/// What a target counted over all its users: the strategy's own counters (locks, retries) for
/// booking-cli's strategies, the status codes for a target reached over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TargetStats {
    pub strategy: StrategyStats,
    pub http: Option<HttpStats>,
}

impl TargetStats {
    pub fn merge(&mut self, other: &TargetStats) {
        self.strategy.merge(&other.strategy);
        self.http = match (self.http.take(), &other.http) {
            (Some(mut mine), Some(theirs)) => {
                mine.merge(theirs);
                Some(mine)
            }
            (mine, theirs) => mine.or_else(|| theirs.clone()),
        };
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
