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
