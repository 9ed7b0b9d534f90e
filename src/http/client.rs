//! `stress --target URL`: the race over the network. A [`Strategy`] whose booking is one
//! `POST /api/bookings` to a `serve` (round-robin over several), so that the runner, the
//! barrier, the verdict from the database and the reports are those of every other run.
//!
//! Each user's request goes over a keep-alive connection opened before the start barrier
//! ([`Strategy::warm_up`]): the race starts at the barrier, not at a TCP handshake. The status
//! codes are counted as the server sent them — the outcome table shows them as `hey` and `oha`
//! do — and mapped back to outcomes by the problem `type` the server names.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{BookingRequest, Outcome, RoomId, Stay};
use crate::error::{BookingError, InputError};
use crate::repo::NightState;
use crate::strategy::{Mode, Strategy, StrategyStats};

/// The deadline of one request (connecting: [`CONNECT_TIMEOUT`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What came back over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpStats {
    /// Responses by status code.
    pub status_codes: BTreeMap<u16, u64>,
    /// Requests that got no response at all (refused, reset, timed out).
    pub transport_errors: u64,
}

impl HttpStats {
    pub fn merge(&mut self, other: &HttpStats) {
        for (status, count) in &other.status_codes {
            *self.status_codes.entry(*status).or_default() += count;
        }
        self.transport_errors += other.transport_errors;
    }
}

/// The slot the run prepared, for checking that `DATABASE_URL` is the server's database.
#[derive(Debug, Clone, Copy)]
pub struct PreparedSlot {
    pub room: RoomId,
    pub stay: Stay,
    pub inventory: i32,
}

/// Books over HTTP.
pub struct HttpStrategy {
    client: reqwest::Client,
    /// Base URLs, without a trailing slash.
    targets: Vec<String>,
    next: AtomicUsize,
    mode: Mode,
    slot: PreparedSlot,
    stats: Mutex<HttpStats>,
}

/// The parts of a problem+json body the client reads.
#[derive(Debug, Default, Deserialize)]
struct ProblemBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    night: Option<chrono::NaiveDate>,
}

#[derive(Debug, Deserialize)]
struct Created {
    id: i64,
}

#[derive(Debug, Deserialize)]
struct Availability {
    nights: Vec<AvailabilityNight>,
}

#[derive(Debug, Deserialize)]
struct AvailabilityNight {
    date: chrono::NaiveDate,
    total_inventory: i32,
    booked_count: i32,
}

impl HttpStrategy {
    /// `targets`: base URLs (`http://127.0.0.1:8080`), each checked to be http(s).
    pub fn new(targets: &[String], mode: Mode, slot: PreparedSlot) -> Result<Self, InputError> {
        let mut bases = Vec::with_capacity(targets.len());
        for target in targets {
            let url = url::Url::parse(target).map_err(|e| {
                InputError::Invalid(format!("--target '{target}' is not a URL: {e}"))
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(InputError::Invalid(format!(
                    "--target '{target}' is not an http:// URL of a booking-cli serve"
                )));
            }
            bases.push(target.trim_end_matches('/').to_owned());
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .build()
            .map_err(|e| InputError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            targets: bases,
            next: AtomicUsize::new(0),
            mode,
            slot,
            stats: Mutex::default(),
        })
    }

    fn count(&self, status: Option<u16>) {
        let mut stats = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match status {
            Some(status) => *stats.status_codes.entry(status).or_default() += 1,
            None => stats.transport_errors += 1,
        }
    }

    /// Before anything is written: every server must see the slot exactly as `DATABASE_URL`
    /// shows it (`nights`, read there), or the verdict would be read from another database.
    pub async fn check_before(&self, nights: &[NightState]) -> Result<(), BookingError> {
        let expected: Vec<(chrono::NaiveDate, i32, i32)> = nights
            .iter()
            .filter(|n| n.room == self.slot.room)
            .map(|n| (n.night, n.total_inventory, n.booked_count))
            .collect();
        for target in &self.targets {
            self.check_same_database(target, &expected).await?;
        }
        Ok(())
    }

    /// Checks that the server reads the slot as `expected` (date, total_inventory,
    /// booked_count), as this run sees it through `DATABASE_URL`: the verdict is read from that
    /// database, so it must be the server's.
    async fn check_same_database(
        &self,
        target: &str,
        expected: &[(chrono::NaiveDate, i32, i32)],
    ) -> Result<(), BookingError> {
        let slot = &self.slot;
        let url = format!(
            "{target}/api/rooms/{}/availability?from={}&to={}",
            slot.room,
            slot.stay.from(),
            slot.stay.to()
        );
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| BookingError::Http(format!("GET {url}: {}", chain(&e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(InputError::Invalid(format!(
                "DATABASE_URL must reach the database of the server at {target}, but the server does not know room {} on {} (GET {url}: {status})",
                slot.room, slot.stay
            ))
            .into());
        }
        let seen: Availability = response
            .json()
            .await
            .map_err(|e| BookingError::Http(format!("GET {url}: {e}")))?;
        let theirs: Vec<(chrono::NaiveDate, i32, i32)> = seen
            .nights
            .iter()
            .map(|n| (n.date, n.total_inventory, n.booked_count))
            .collect();
        if let Some(((date, total, booked), (_, our_total, our_booked))) = theirs
            .iter()
            .zip(expected)
            .find(|(theirs, ours)| theirs != ours)
        {
            return Err(InputError::Invalid(format!(
                "DATABASE_URL must reach the database of the server at {target}: the server reports room {} on {date} with total_inventory {total} and booked_count {booked}, DATABASE_URL shows {our_total} and {our_booked}",
                slot.room
            ))
            .into());
        }
        Ok(())
    }
}

#[async_trait]
impl Strategy for HttpStrategy {
    #[tracing::instrument(name = "http", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        let target = &self.targets[self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len()];
        let url = format!("{target}/api/bookings");
        let body = serde_json::json!({
            "user_id": request.user.as_uuid(),
            "room_id": request.room.get(),
            "start_date": request.stay.from(),
            "end_date": request.stay.to(),
        });
        // The phases the client sees: the request until the response's head, then its body.
        crate::steps::mark("request");
        let sent = self
            .client
            .post(&url)
            .header(super::MODE_HEADER, self.mode.name())
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                self.count(None);
                return Err(BookingError::Http(format!("POST {url}: {}", chain(&error))));
            }
        };
        let status = response.status();
        self.count(Some(status.as_u16()));
        crate::steps::mark("response");
        let text = response.text().await.unwrap_or_default();
        if status.as_u16() == 201 {
            let created: Created = serde_json::from_str(&text).map_err(|e| {
                BookingError::Http(format!("POST {url}: 201 with an unreadable body: {e}"))
            })?;
            return Ok(Outcome::Created {
                booking_id: created.id,
            });
        }
        let problem: ProblemBody = serde_json::from_str(&text).unwrap_or_default();
        let night = problem.night.unwrap_or(request.stay.from());
        // Refusals by their problem type, whatever status the server gave them (409 or 503).
        let outcome = match problem.kind.as_str() {
            "/problems/sold-out" => Outcome::SoldOut { night },
            "/problems/lock-busy" => Outcome::LockNotAcquired {
                key: format!("{target} (server side)"),
                attempts: 0,
            },
            "/problems/retries-exhausted" => Outcome::RetriesExhausted { attempts: 0 },
            "/problems/fenced-out" => Outcome::FencedOut { night },
            "/problems/lock-expired" => Outcome::LockExpired {
                key: format!("{target} (server side)"),
            },
            "/problems/on-hold" => Outcome::OnHold { night },
            "/problems/payment-failed" => Outcome::PaymentFailed,
            "/problems/hold-expired" => Outcome::HoldExpired,
            _ => {
                return Err(BookingError::Http(format!(
                    "POST {url}: {status}: {}",
                    if problem.detail.is_empty() {
                        text.chars().take(200).collect()
                    } else {
                        problem.detail
                    }
                )));
            }
        };
        Ok(outcome)
    }

    /// Checks that each server reads the slot as this run just prepared it, then opens
    /// `connections` keep-alive connections, spread over the targets.
    async fn warm_up(&self, connections: u32) -> Result<(), BookingError> {
        let prepared: Vec<_> = self
            .slot
            .stay
            .nights()
            .map(|night| (night, self.slot.inventory, 0))
            .collect();
        for target in &self.targets {
            self.check_same_database(target, &prepared).await?;
        }
        let mut pings = tokio::task::JoinSet::new();
        for i in 0..connections.max(1) as usize {
            let target = self.targets[i % self.targets.len()].clone();
            let client = self.client.clone();
            pings.spawn(async move {
                let url = format!("{target}/ping");
                client
                    .get(&url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map(|_| ())
                    .map_err(|e| BookingError::Http(format!("GET {url}: {}", chain(&e))))
            });
        }
        while let Some(joined) = pings.join_next().await {
            joined.map_err(|e| BookingError::Http(e.to_string()))??;
        }
        Ok(())
    }

    /// Every user may have a request in flight at once (a connection each).
    fn lanes(&self) -> Option<u32> {
        Some(MAX_CONNECTIONS)
    }

    fn stats(&self) -> StrategyStats {
        StrategyStats {
            http: Some(
                self.stats
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone(),
            ),
            ..StrategyStats::default()
        }
    }
}

/// An error and its causes, on one line (reqwest's own message leaves out why).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// Requests in flight at most (one keep-alive connection each); users beyond take turns.
pub const MAX_CONNECTIONS: u32 = 512;
