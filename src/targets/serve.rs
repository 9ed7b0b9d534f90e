//! booking-cli's own `serve` as a target (`stress --target URL`): each user's booking is one
//! `POST /api/bookings` to a `serve` (round-robin over several), on booking-cli's schema, so
//! that the runner, the barrier, the verdict from the database and the reports are those of
//! every other run.
//!
//! Before anything is written, every server must read the slot as `DATABASE_URL` shows it
//! ([`ServeTarget::connect`]); after the run, every booking a server acknowledged must be in
//! that database, or the verdict is `UNACCOUNTED` — a server writing elsewhere can never look
//! safe. Each user's request goes over a keep-alive connection opened before the start barrier
//! ([`Target::warm_up`]); under `--sync` (a burst), over a connection or HTTP/2 stream of its
//! own, sent up to its final bytes before the barrier and released with the others
//! ([`crate::sync::delivery`]). The status codes are counted as the server sent them and mapped
//! back to outcomes by the problem `type` the server names ([`crate::http::wire`]); a response
//! whose type is not one of `serve`'s is counted as what its status says.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::config::TargetUrl;
use crate::domain::{Outcome, RoomId, Stay};
use crate::error::{BookingError, InputError};
use crate::http::wire;
use crate::repo::Repo;
use crate::run::{Attempt, StressConfig, Target, TargetStats, Turn};
use crate::sync::HttpStats;
use crate::sync::delivery::{Addressed, Delivery, Origin, Wire};
use crate::sync::h2::Prepared;
use crate::sync::tls::Tls;

/// The deadline of one request (connecting: [`CONNECT_TIMEOUT`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The slot the run prepares, for checking that `DATABASE_URL` is the server's database.
#[derive(Debug, Clone, Copy)]
struct PreparedSlot {
    room: RoomId,
    stay: Stay,
    inventory: i32,
}

/// Books over HTTP.
pub struct ServeTarget {
    client: reqwest::Client,
    /// Base URLs, without a trailing slash.
    targets: Vec<TargetUrl>,
    next: AtomicUsize,
    plan: Arc<StressConfig>,
    slot: PreparedSlot,
    stats: Mutex<HttpStats>,
    /// Under `--sync`: the burst's requests, prepared in the warm-up and released together.
    delivery: Option<Delivery>,
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

impl ServeTarget {
    /// The servers at `targets` (base URLs, `http://127.0.0.1:8080`), for `plan` — checked,
    /// before anything is written, to read the slot as `repo` (`DATABASE_URL`) shows it.
    pub async fn connect(
        targets: &[TargetUrl],
        plan: &StressConfig,
        repo: &Repo,
        tls: Option<&Tls>,
        wire: Option<Arc<Wire>>,
    ) -> Result<Self, BookingError> {
        let mut target = Self::new(targets, plan, tls)?;
        target.delivery = wire.map(|wire| Delivery::new(wire, plan.users));
        let nights = repo
            .slot_state(target.slot.room, &target.slot.stay)
            .await
            .map_err(BookingError::Database)?;
        let expected: Vec<(chrono::NaiveDate, i32, i32)> = nights
            .iter()
            .map(|n| (n.night, n.total_inventory, n.booked_count))
            .collect();
        for base in target.targets.iter().map(|t| &t.base) {
            target
                .check_same_database(base, &expected)
                .await
                .map_err(|e| target.masked(e))?;
        }
        Ok(target)
    }

    /// `error` with every target's credentials masked (`http://user:***@host`): messages are
    /// built from the URLs, and reqwest's own name them too.
    fn masked(&self, error: BookingError) -> BookingError {
        let mask = |text: String| {
            self.targets.iter().fold(text, |text, target| {
                text.replace(
                    target.base.as_str(),
                    crate::config::mask_url(&target.base).trim_end_matches('/'),
                )
            })
        };
        match error {
            BookingError::Target(text) => BookingError::Target(mask(text)),
            BookingError::Input(InputError::Invalid(text)) => {
                BookingError::Input(InputError::Invalid(mask(text)))
            }
            other => other,
        }
    }

    fn new(
        targets: &[TargetUrl],
        plan: &StressConfig,
        tls: Option<&Tls>,
    ) -> Result<Self, InputError> {
        crate::sync::tls::install_default_provider();
        let mut client = reqwest::Client::builder();
        if let Some(tls) = tls {
            client = client.tls_backend_preconfigured(tls.config.clone());
        }
        let client = client
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .build()
            .map_err(|e| InputError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            targets: targets.to_vec(),
            next: AtomicUsize::new(0),
            slot: PreparedSlot {
                room: plan.room,
                stay: plan.region()?,
                inventory: plan.inventory,
            },
            plan: Arc::new(plan.clone()),
            stats: Mutex::default(),
            delivery: None,
        })
    }

    fn count(&self, status: Option<u16>) {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .count(status);
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
            "{target}{}?from={}&to={}",
            wire::availability_path(slot.room),
            slot.stay.from(),
            slot.stay.to()
        );
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| BookingError::Target(format!("GET {url}: {}", chain(&e))))?;
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
            .map_err(|e| BookingError::Target(format!("GET {url}: {e}")))?;
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

impl ServeTarget {
    /// One `POST /api/bookings`, its status counted and mapped back to an outcome.
    async fn book(&self, request: &crate::domain::BookingRequest) -> Result<Outcome, BookingError> {
        let target = &self.targets[self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len()];
        let url = format!("{}{}", target.base, wire::BOOKINGS);
        let body = booking_body(request);
        // The phases the client sees: the request until the response's head, then its body.
        crate::steps::mark("request");
        let sent = self
            .client
            .post(&url)
            .header(wire::MODE_HEADER, self.plan.mode.name())
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                self.count(None);
                return Err(BookingError::Target(format!(
                    "POST {url}: {}",
                    chain(&error)
                )));
            }
        };
        let status = response.status().as_u16();
        self.count(Some(status));
        crate::steps::mark("response");
        let text = response.text().await.unwrap_or_default();
        outcome_of(&url, status, &text, request)
    }

    /// User `user`'s request under `--sync`: to its server (round-robin, as without), its body
    /// what [`ServeTarget::book`] sends.
    fn addressed(&self, user: u32) -> Result<Addressed, String> {
        let target = &self.targets[user as usize % self.targets.len()];
        let Origin {
            host,
            port,
            authority,
        } = target.origin.clone();
        let scheme = if target.https { "https" } else { "http" };
        let request = self.plan.request(user);
        let body = serde_json::to_vec(&booking_body(&request)).map_err(|e| e.to_string())?;
        let headers = vec![
            (hyper::header::CONTENT_TYPE, "application/json".to_owned()),
            (
                hyper::header::HeaderName::from_static(wire::MODE_HEADER),
                self.plan.mode.name().to_owned(),
            ),
        ];
        Ok(Addressed {
            request: Prepared {
                method: hyper::Method::POST,
                uri: format!("{scheme}://{authority}{}", wire::BOOKINGS),
                headers,
                body,
            },
            host,
            port,
            authority,
            path: wire::BOOKINGS.to_owned(),
        })
    }

    /// User `user`'s booking released with the burst (`--sync`), its answer read as
    /// [`ServeTarget::book`] reads one.
    async fn deliver(&self, delivery: &Delivery, user: u32) -> Result<Outcome, BookingError> {
        let request = self.plan.request(user);
        let url = format!(
            "{}{}",
            self.targets[user as usize % self.targets.len()].base,
            wire::BOOKINGS
        );
        let answer = match delivery.deliver(user).await {
            Ok(answer) => answer,
            Err(error) => {
                self.count(None);
                return Err(BookingError::Target(format!(
                    "POST {url}: {}",
                    error.no_answer()
                )));
            }
        };
        {
            let mut stats = self
                .stats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            stats.count(Some(answer.status));
            stats
                .arrivals_us
                .extend(answer.server_timing().and_then(wire::arrival_of));
        }
        let text = String::from_utf8_lossy(&answer.body);
        outcome_of(&url, answer.status, &text, &request)
    }
}

/// The body of `POST /api/bookings` for `request`.
fn booking_body(request: &crate::domain::BookingRequest) -> serde_json::Value {
    serde_json::json!({
        "user_id": request.user.as_uuid(),
        "room_id": request.room.get(),
        "start_date": request.stay.from(),
        "end_date": request.stay.to(),
    })
}

/// The outcome `serve` answered `status` and `text` (its body) to `request` with.
fn outcome_of(
    url: &str,
    status: u16,
    text: &str,
    request: &crate::domain::BookingRequest,
) -> Result<Outcome, BookingError> {
    if status == 201 {
        let created: Created = serde_json::from_str(text).map_err(|e| {
            BookingError::Target(format!("POST {url}: 201 with an unreadable body: {e}"))
        })?;
        return Ok(Outcome::Created {
            booking_id: created.id,
        });
    }
    let problem: ProblemBody = serde_json::from_str(text).unwrap_or_default();
    let night = problem.night.unwrap_or(request.stay.from());
    // Refusals by their problem type, whatever status the server gave them (409 or 503);
    // anything else is what its status says: a success, a refusal, or (5xx) a failure.
    if let Some(outcome) = wire::refusal_outcome(&problem.kind, night) {
        return Ok(outcome);
    }
    match status {
        200..=299 => Ok(Outcome::Acknowledged),
        500.. => Err(BookingError::Target(format!(
            "POST {url}: {status}: {}",
            if problem.detail.is_empty() {
                text.chars().take(200).collect()
            } else {
                problem.detail
            }
        ))),
        _ => Ok(Outcome::Declined),
    }
}

impl ServeTarget {
    /// Checks that each server reads the slot as this run just prepared it, then opens
    /// `connections` keep-alive connections, spread over the targets — or, under `--sync`,
    /// prepares every user's request.
    async fn warm(&self, connections: u32) -> Result<(), BookingError> {
        let prepared: Vec<_> = self
            .slot
            .stay
            .nights()
            .map(|night| (night, self.slot.inventory, 0))
            .collect();
        for target in &self.targets {
            self.check_same_database(&target.base, &prepared).await?;
        }
        if let Some(delivery) = &self.delivery {
            return delivery
                .prepare(|user| {
                    self.addressed(user)
                        .map_err(crate::sync::delivery::PrepareError::Request)
                })
                .await
                .map_err(|e| BookingError::Target(format!("{e} (--target)")));
        }
        let mut pings = tokio::task::JoinSet::new();
        for i in 0..connections.max(1) as usize {
            let target = self.targets[i % self.targets.len()].base.clone();
            let client = self.client.clone();
            pings.spawn(async move {
                let url = format!("{target}{}", wire::PING);
                client
                    .get(&url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map(|_| ())
                    .map_err(|e| BookingError::Target(format!("GET {url}: {}", chain(&e))))
            });
        }
        while let Some(joined) = pings.join_next().await {
            joined.map_err(|e| BookingError::Target(e.to_string()))??;
        }
        Ok(())
    }
}

#[async_trait]
impl Target for ServeTarget {
    async fn warm_up(&self, connections: u32) -> Result<(), BookingError> {
        self.warm(connections).await.map_err(|e| self.masked(e))
    }

    /// Every user may have a request in flight at once (a connection each; under `--sync`,
    /// every user of the burst).
    fn lanes(&self) -> u32 {
        match &self.delivery {
            Some(_) => self.plan.users,
            None => MAX_CONNECTIONS,
        }
    }

    #[tracing::instrument(name = "http", skip_all, fields(user = turn.user))]
    async fn attempt(&self, turn: Turn) -> Attempt {
        let request = super::request_for(&self.plan, turn);
        let result = match &self.delivery {
            Some(delivery) => self.deliver(delivery, turn.user).await,
            None => self.book(&request).await,
        };
        Attempt {
            request: Some(request),
            result: result.map_err(|e| self.masked(e)),
        }
    }

    fn stats(&self) -> TargetStats {
        TargetStats {
            strategy: Default::default(),
            remote: Some(Box::new(HttpStats {
                sync: self.delivery.as_ref().map(Delivery::sync),
                releases_us: self
                    .delivery
                    .as_ref()
                    .map(Delivery::releases_us)
                    .unwrap_or_default(),
                ..self
                    .stats
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })),
        }
    }
}

/// An error and its causes, on one line (reqwest's own message leaves out why).
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
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
