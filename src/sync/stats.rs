//! What a remote target's transport counted: its answers by status, the requests that got
//! none, and how its burst went out — [`crate::run::Counts`] for `race` and `stress --target`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::run::tally::Counts;

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
    pub sync: Option<super::Sync>,
    /// Connections the server closed or reset before the release, reopened and pre-sent
    /// again so that the burst went out whole (`race`).
    #[serde(default)]
    pub reopened: u64,
    /// Requests answered before their held bytes were sent: the server did not wait for the
    /// request to be complete, so the release did not hold them back (`race`).
    #[serde(default)]
    pub answered_early: u64,
    /// When each request's last byte was written, in µs on the client's clock (`race`).
    #[serde(skip)]
    pub releases_us: Vec<u64>,
    /// When each request arrived whole, in µs on the server's clock, as its
    /// `Server-Timing: arrival` said (servers that send it: `serve`).
    #[serde(skip)]
    pub arrivals_us: Vec<u64>,
    /// Per request of a `race` burst, in the order of its `[[request]]` entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_request: Vec<RequestCounts>,
}

/// What one request of a burst came to: how many were sent, their successes (as its
/// `success` says), refusals and failures, its statuses and its latencies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub name: String,
    pub sent: u64,
    pub successes: u64,
    pub refused: u64,
    /// No answer, or a 5xx.
    pub errors: u64,
    pub status_codes: BTreeMap<u16, u64>,
    /// From the barrier to the answer read, in µs.
    #[serde(skip)]
    pub latencies_us: Vec<u64>,
}

impl RequestCounts {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    fn merge(&mut self, other: &RequestCounts) {
        self.sent += other.sent;
        self.successes += other.successes;
        self.refused += other.refused;
        self.errors += other.errors;
        for (status, count) in &other.status_codes {
            *self.status_codes.entry(*status).or_default() += count;
        }
        self.latencies_us.extend(&other.latencies_us);
    }

    /// The median and the slowest latency, in ms.
    pub fn latency_ms(&self) -> Option<(f64, f64)> {
        let mut all = self.latencies_us.clone();
        if all.is_empty() {
            return None;
        }
        all.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        Some((ms(all[all.len() / 2]), ms(all[all.len() - 1])))
    }
}

impl HttpStats {
    pub fn merge(&mut self, other: &HttpStats) {
        for (status, count) in &other.status_codes {
            *self.status_codes.entry(*status).or_default() += count;
        }
        self.transport_errors += other.transport_errors;
        self.reopened += other.reopened;
        self.answered_early += other.answered_early;
        self.releases_us.extend(&other.releases_us);
        self.arrivals_us.extend(&other.arrivals_us);
        for theirs in &other.by_request {
            match self.by_request.iter_mut().find(|r| r.name == theirs.name) {
                Some(ours) => ours.merge(theirs),
                None => self.by_request.push(theirs.clone()),
            }
        }
    }

    /// An answer (or none) to request `index` of a `race` burst, after `took`.
    pub fn count_request(
        &mut self,
        index: usize,
        status: Option<u16>,
        success: bool,
        took: std::time::Duration,
    ) {
        self.count(status);
        if let Some(counts) = self.by_request.get_mut(index) {
            counts.sent += 1;
            match status {
                _ if success => counts.successes += 1,
                Some(status) if status < 500 => counts.refused += 1,
                _ => counts.errors += 1,
            }
            if let Some(status) = status {
                *counts.status_codes.entry(status).or_default() += 1;
            }
            counts
                .latencies_us
                .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        }
    }

    pub fn count(&mut self, status: Option<u16>) {
        match status {
            Some(status) => *self.status_codes.entry(status).or_default() += 1,
            None => self.transport_errors += 1,
        }
    }
}

impl Counts for HttpStats {
    fn merge_from(&mut self, other: &dyn Counts) {
        if let Some(other) = other.as_any().downcast_ref::<HttpStats>() {
            self.merge(other);
        }
    }

    fn clone_box(&self) -> Box<dyn Counts> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
