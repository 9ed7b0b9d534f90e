//! The handlers. Each parses its request into the same domain types `book` builds from its
//! flags, calls the same strategy, and maps the outcome to a status in [`outcome_response`] —
//! one function, so that a sold-out night and a busy lock are answered the same way wherever
//! they come from. They never reach the 500 path: only failures of this server do.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::listen::Received;
use super::problem::Problem;
use super::wire::{self, refusal};
use super::{AppState, MODE_HEADER, metrics};
use crate::domain::{BookingRequest, Outcome, RoomId, Stay, StayError};
use crate::error::{BookingError, InputError};
use crate::repo::BookingRow;
use crate::strategy::Mode;

/// The body of `POST /api/bookings`, as the original API took it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBooking {
    #[schema(example = "6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f")]
    pub user_id: Uuid,
    #[schema(example = 2)]
    pub room_id: i64,
    #[schema(example = "2024-12-21")]
    pub start_date: NaiveDate,
    /// The day the guest leaves (exclusive).
    #[schema(example = "2024-12-23")]
    pub end_date: NaiveDate,
}

/// A booking as the API shows it: the row, and the strategy that made it (when this response
/// made it).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BookingJson {
    #[serde(flatten)]
    pub row: BookingRow,
    /// The strategy that made the booking (`X-Booking-Mode`), when this response made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub mode: Option<Mode>,
}

/// Book a stay: every night of it, or none.
///
/// The strategy is `X-Booking-Mode`'s, else the server's `--mode`. A refusal worth retrying
/// (lock busy, retries exhausted, lock expired, fenced out, rooms on hold) is `503` with
/// `Retry-After`, or `409` under `--busy-status 409`.
#[utoipa::path(
    post,
    path = "/api/bookings",
    tag = "bookings",
    request_body(content = NewBooking, content_type = "application/json"),
    params(
        ("X-Booking-Mode" = Option<String>, Header, description = "The strategy: one of `booking-cli strategies --names`"),
    ),
    responses(
        (status = 201, description = "Booked", body = BookingJson, headers(
            ("Location" = String, description = "The booking: /api/bookings/{id}"),
            ("X-Booking-Mode" = String, description = "The strategy that ran"),
            ("Server-Timing" = String, description = "arrival;desc=\"<µs>\": when the request arrived whole, on the server's monotonic clock"),
        )),
        (status = 400, description = "Malformed JSON, a missing or mistyped field, an unknown X-Booking-Mode", body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "reserve: the simulated payment failed; the hold was cancelled (payment-failed)", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within --body-timeout (request-timeout)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A night is sold out (sold-out), or reserve's hold expired (hold-expired); with --busy-status 409 also the retryable refusals", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "A body over 16 KiB (payload-too-large)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body without Content-Type: application/json (unsupported-media-type)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Well-formed but impossible: invalid-stay, unknown-room, no-inventory", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "A failure of the server itself (internal)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Worth retrying (Retry-After): lock-busy, retries-exhausted, lock-expired, fenced-out, on-hold, busy, booking-timeout, mode-unavailable, shutting-down, database-unavailable, lock-unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    ConnectInfo(received): ConnectInfo<Received>,
    headers: HeaderMap,
    body: Result<Json<NewBooking>, JsonRejection>,
) -> Response {
    // The body has been read whole by the extractor: the connection's latest read brought its
    // final bytes, and the kernel stamped when they arrived (see `listen`).
    let arrived = received.last();
    let mode = match mode_of(&state, &headers) {
        Ok(mode) => mode,
        Err(problem) => return problem.into_response(),
    };
    let answer = book(&state, mode, body).await;
    let mut response = match answer {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(mode.name()) {
        response.headers_mut().insert(MODE_HEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&wire::arrival_timing(arrived)) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}

async fn book(
    state: &AppState,
    mode: Mode,
    body: Result<Json<NewBooking>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(body) = body?;
    let request = validate(state, mode, &body).await?;
    let Some(strategy) = state.strategies.get(&mode).cloned() else {
        let why = state
            .unavailable
            .get(&mode)
            .cloned()
            .unwrap_or_else(|| "not set up on this server".to_owned());
        return Err(Problem::unavailable(
            "mode-unavailable",
            "Mode unavailable",
            format!("--mode {mode} cannot run here: {why}"),
        )
        .with("mode", mode.name()));
    };
    // Beyond the cap, answer at once rather than queue without bound.
    let Ok(slot) = state.slots.clone().try_acquire_owned() else {
        return Err(Problem::unavailable(
            "busy",
            "Too many bookings in flight",
            format!(
                "{} bookings are in flight, the most this server takes at once",
                state.settings.max_in_flight
            ),
        ));
    };
    let tracked = state.in_flight.track();
    let started = Instant::now();
    // The booking runs in a task of its own: if the client disconnects, this handler is dropped
    // but the booking completes or rolls back whole, and a shutdown still waits for it.
    let task = tokio::spawn(async move {
        let _slot = slot;
        let _tracked = tracked;
        strategy.book(&request).await
    });
    let limit = state.settings.booking_timeout;
    let result = match tokio::time::timeout(limit, task).await {
        Err(_) => {
            metrics::booking(mode, "timeout", started.elapsed());
            return Err(Problem::unavailable(
                "booking-timeout",
                "Booking timed out",
                format!(
                    "the booking did not finish within {}; it may still complete — check GET /api/rooms/{}/availability",
                    humantime::format_duration(limit),
                    request.room
                ),
            ));
        }
        Ok(Err(join)) => {
            tracing::error!(%join, "booking task failed");
            return Err(Problem::internal());
        }
        Ok(Ok(result)) => result,
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(BookingError::Input(input)) => return Err(input_problem(&input)),
        // A server that went away is not this server's fault: 503, try again.
        Err(error) if error.unavailable().is_some() => {
            metrics::booking(mode, "unavailable", started.elapsed());
            tracing::warn!(%error, %mode, "booking failed: a server is unavailable");
            return Err(server_unavailable(&error));
        }
        Err(error) => {
            metrics::booking(mode, "error", started.elapsed());
            tracing::error!(%error, %mode, "booking failed");
            return Err(Problem::internal());
        }
    };
    metrics::booking(mode, outcome.kind(), started.elapsed());
    outcome_response(state, mode, &request, outcome).await
}

/// The 503 of a booking whose PostgreSQL or Redis did not answer. What was written is what the
/// database says: a transaction cut off before its commit wrote nothing.
fn server_unavailable(error: &BookingError) -> Problem {
    match error.unavailable() {
        Some("redis") => Problem::unavailable(
            "lock-unavailable",
            "Lock service unavailable",
            format!("the lock's Redis did not answer: {error}"),
        ),
        _ => Problem::unavailable(
            "database-unavailable",
            "Database unavailable",
            format!("PostgreSQL did not answer: {error}"),
        ),
    }
}

/// A read that failed: `503` when PostgreSQL is unavailable, else `500` (logged as `what`).
fn read_failed(error: sqlx::Error, what: &str) -> Problem {
    if crate::error::is_unavailable(&error) {
        tracing::warn!(%error, "{what}: PostgreSQL is unavailable");
        return server_unavailable(&BookingError::Database(error));
    }
    tracing::error!(%error, "{what}");
    Problem::internal()
}

/// The strategy of a request: `X-Booking-Mode`, else the server's `--mode`.
fn mode_of(state: &AppState, headers: &HeaderMap) -> Result<Mode, Problem> {
    let Some(value) = headers.get(MODE_HEADER) else {
        return Ok(state.settings.mode);
    };
    let text = value.to_str().unwrap_or("").trim();
    Mode::named(text).ok_or_else(|| {
        let names: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
        Problem::bad_request(
            Some("X-Booking-Mode"),
            format!(
                "unknown X-Booking-Mode '{text}' (one of: {})",
                names.join(", ")
            ),
        )
    })
}

/// The body, as domain types, checked against the hotel without writing anything.
///
/// The hotel is asked first (one round trip) only for a strategy that would otherwise take a
/// lock or count a fencing token for a room that does not exist; the others say
/// `unknown-room` or `no-inventory` themselves
/// ([`Spec::checks_stay`](crate::strategy::Spec::checks_stay)). Skipping it matters beyond
/// the round trip: in a burst, the bookings that waited for it gave the first one time to
/// commit before the others read — a naive server looked safe (docs/performance.md).
async fn validate(
    state: &AppState,
    mode: Mode,
    body: &NewBooking,
) -> Result<BookingRequest, Problem> {
    let room = i32::try_from(body.room_id)
        .ok()
        .and_then(|id| RoomId::new(id).ok())
        .ok_or_else(|| unknown_room(body.room_id))?;
    let stay = Stay::between(body.start_date, body.end_date).map_err(|error| match error {
        StayError::NotAfter { from, to } => Problem::unprocessable(
            "invalid-stay",
            "Invalid stay",
            format!("end_date {to} must be after start_date {from} (the day the guest leaves)"),
        )
        .with("field", "end_date"),
        StayError::BeforePostgres { from } => Problem::unprocessable(
            "invalid-stay",
            "Invalid stay",
            format!("start_date {from} is before the first date PostgreSQL stores (4714-11-24 BC)"),
        )
        .with("field", "start_date"),
        other => Problem::unprocessable("invalid-stay", "Invalid stay", other.to_string()),
    })?;
    let checked = if mode.spec().checks_stay {
        Ok(())
    } else {
        state.repo.ensure_bookable(room, &stay).await
    };
    match checked {
        Ok(()) => {}
        Err(BookingError::Input(input)) => return Err(input_problem(&input)),
        Err(error) if error.unavailable().is_some() => {
            tracing::warn!(%error, "checking the stay failed: PostgreSQL is unavailable");
            return Err(server_unavailable(&error));
        }
        Err(error) => {
            tracing::error!(%error, "checking the stay failed");
            return Err(Problem::internal());
        }
    }
    Ok(BookingRequest {
        user: body.user_id.into(),
        room,
        stay,
    })
}

fn unknown_room(room: impl std::fmt::Display) -> Problem {
    Problem::unprocessable(
        "unknown-room",
        "Unknown room",
        format!("room {room} does not exist"),
    )
    .with("field", "room_id")
}

/// A request that parsed but does not fit the hotel: 422.
fn input_problem(input: &InputError) -> Problem {
    match input {
        InputError::UnknownRoom { room } => unknown_room(room),
        InputError::NoInventory { room, night } => Problem::unprocessable(
            "no-inventory",
            "No inventory",
            format!("room {room} has no inventory on {night}"),
        )
        .with("night", night.to_string()),
        other => Problem::unprocessable("invalid-booking", "Invalid booking", other.to_string()),
    }
}

/// The one place an outcome becomes a status: 201 with the booking, 409 when a night is sold
/// out, and — for what may succeed when tried again (a busy or expired lock, retries run out, a
/// newer lock holder) — 503 with `Retry-After`, or 409 as the original API answered
/// (`--busy-status 409`).
async fn outcome_response(
    state: &AppState,
    mode: Mode,
    request: &BookingRequest,
    outcome: Outcome,
) -> Result<Response, Problem> {
    let busy = |kind: &str, title: &str, detail: String| {
        let problem = Problem::new(state.settings.busy_status, kind, title, detail);
        let problem = if state.settings.busy_status == StatusCode::SERVICE_UNAVAILABLE {
            problem.retry_after(1)
        } else {
            problem
        };
        Err(problem.with("mode", mode.name()))
    };
    match outcome {
        Outcome::Created { booking_id } => created(state, mode, request, booking_id).await,
        Outcome::SoldOut { night } => Err(Problem::new(
            StatusCode::CONFLICT,
            refusal::SOLD_OUT,
            "Sold out",
            format!("room {} has no room left on {night}", request.room),
        )
        .with("night", night.to_string())
        .with("mode", mode.name())),
        Outcome::LockNotAcquired { key, attempts } => busy(
            refusal::LOCK_BUSY,
            "Lock busy",
            format!("{key} stayed held by another booking for {attempts} attempts; try again"),
        ),
        Outcome::RetriesExhausted { attempts } => busy(
            refusal::RETRIES_EXHAUSTED,
            "Retries exhausted",
            format!("PostgreSQL aborted the transaction on all {attempts} attempts; try again"),
        ),
        Outcome::FencedOut { night } => busy(
            refusal::FENCED_OUT,
            "Stale lock token",
            format!("the lock on {night} expired and a newer holder claimed it; try again"),
        ),
        Outcome::LockExpired { key } => busy(
            refusal::LOCK_EXPIRED,
            "Lock expired",
            format!("{key} stopped being valid before the booking could commit; try again"),
        ),
        Outcome::OnHold { night } => busy(
            refusal::ON_HOLD,
            "Rooms on hold",
            format!(
                "every room of room {} on {night} is sold or on hold; a hold whose payment fails gives its room back: try again",
                request.room
            ),
        ),
        Outcome::PaymentFailed => Err(Problem::new(
            StatusCode::PAYMENT_REQUIRED,
            refusal::PAYMENT_FAILED,
            "Payment failed",
            "the payment failed; the hold was cancelled and its nights given back".to_owned(),
        )
        .with("mode", mode.name())),
        Outcome::HoldExpired => Err(Problem::new(
            StatusCode::CONFLICT,
            refusal::HOLD_EXPIRED,
            "Hold expired",
            "the payment outlasted the hold, so the booking was not confirmed; its nights were given back".to_owned(),
        )
        .with("mode", mode.name())),
        Outcome::Interrupted => Err(Problem::unavailable(
            "shutting-down",
            "Shutting down",
            "the server is shutting down; nothing was booked",
        )),
        // Outcomes of someone else's endpoint (`race`); no strategy of this server gives them.
        Outcome::Acknowledged | Outcome::Declined => Err(Problem::internal()),
    }
}

/// `201 Created` with the booking as the database has it, and its `Location`.
async fn created(
    state: &AppState,
    mode: Mode,
    request: &BookingRequest,
    id: i64,
) -> Result<Response, Problem> {
    let row = match state.repo.booking(id).await {
        Ok(Some(row)) => row,
        Ok(None) | Err(_) => {
            // Committed, but not readable back just now: say so rather than 500 a booking
            // that exists.
            tracing::warn!(id, "booking created but not read back");
            return Ok((
                StatusCode::CREATED,
                [(header::LOCATION, wire::booking_path(id))],
                Json(serde_json::json!({
                    "id": id,
                    "user_id": request.user.to_string(),
                    "room_id": request.room.get(),
                    "start_date": request.stay.from(),
                    "end_date": request.stay.to(),
                    "status": "confirmed",
                    "mode": mode,
                })),
            )
                .into_response());
        }
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, wire::booking_path(id))],
        Json(BookingJson {
            row,
            mode: Some(mode),
        }),
    )
        .into_response())
}

/// A booking by its id.
#[utoipa::path(
    get,
    path = "/api/bookings/{id}",
    tag = "bookings",
    params(("id" = i64, Path, description = "The booking's id", example = 1)),
    responses(
        (status = 200, description = "The booking", body = BookingJson),
        (status = 400, description = "An id that is not a number (bad-request)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such booking (not-found)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "A failure of the server itself (internal)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL did not answer (database-unavailable)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<BookingJson>, Problem> {
    let Path(id) = id?;
    match state.repo.booking(id).await {
        Ok(Some(row)) => Ok(Json(BookingJson { row, mode: None })),
        Ok(None) => Err(Problem::not_found(format!("no booking {id}"))),
        Err(error) => Err(read_failed(error, "reading a booking failed")),
    }
}

/// The query of `GET /api/rooms/{id}/availability`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Nights {
    /// The first night (YYYY-MM-DD).
    #[param(example = "2024-12-20")]
    pub from: NaiveDate,
    /// The day after the last night (exclusive).
    #[param(example = "2024-12-27")]
    pub to: NaiveDate,
}

/// A room's nights, from the database.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AvailabilityJson {
    pub room_id: i32,
    pub from: NaiveDate,
    /// The day after the last night (exclusive).
    pub to: NaiveDate,
    pub nights: Vec<NightJson>,
}

/// One night of a room, from the database.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NightJson {
    pub date: NaiveDate,
    pub total_inventory: i32,
    pub booked_count: i32,
    pub available: i32,
}

/// Each night of a room: its inventory and bookings, read from the database.
#[utoipa::path(
    get,
    path = "/api/rooms/{id}/availability",
    tag = "bookings",
    params(("id" = i64, Path, description = "The room", example = 1), Nights),
    responses(
        (status = 200, description = "Every night from `from` to `to` (exclusive)", body = AvailabilityJson),
        (status = 400, description = "A missing or malformed query (bad-request)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such room (not-found)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`to` not after `from`, or a night without inventory (invalid-stay, no-inventory)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "A failure of the server itself (internal)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL did not answer (database-unavailable)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn availability(
    State(state): State<AppState>,
    room: Result<Path<i64>, PathRejection>,
    nights: Result<Query<Nights>, QueryRejection>,
) -> Result<Response, Problem> {
    let Path(room_id) = room?;
    let Query(nights) = nights?;
    let room = i32::try_from(room_id)
        .ok()
        .and_then(|id| RoomId::new(id).ok())
        .ok_or_else(|| Problem::not_found(format!("no room {room_id}")))?;
    let stay = Stay::between(nights.from, nights.to).map_err(|error| {
        Problem::unprocessable("invalid-stay", "Invalid nights", error.to_string())
    })?;
    let internal = |error: sqlx::Error| read_failed(error, "reading availability failed");
    if !state.repo.room_exists(room).await.map_err(internal)? {
        return Err(Problem::not_found(format!("no room {room}")));
    }
    let states = state.repo.slot_state(room, &stay).await.map_err(internal)?;
    if let Some(missing) = stay
        .nights()
        .find(|night| !states.iter().any(|s| s.night == *night))
    {
        return Err(input_problem(&InputError::NoInventory {
            room,
            night: missing,
        }));
    }
    let nights: Vec<NightJson> = states
        .iter()
        .map(|s| NightJson {
            date: s.night,
            total_inventory: s.total_inventory,
            booked_count: s.booked_count,
            available: (s.total_inventory - s.booked_count).max(0),
        })
        .collect();
    Ok(Json(AvailabilityJson {
        room_id: room.get(),
        from: stay.from(),
        to: stay.to(),
        nights,
    })
    .into_response())
}

/// The answer of `GET /ping`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Pong {
    /// Always `pong`.
    pub message: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/ping", tag = "operations", responses((status = 200, description = "Alive", body = Pong)))]
pub async fn ping() -> Json<Pong> {
    Json(Pong { message: "pong" })
}

/// The answer of a healthy `GET /healthz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// `postgres` (and `redis`, when the server has a lock): `ok` each.
    #[schema(value_type = Object)]
    pub checks: serde_json::Map<String, serde_json::Value>,
}

/// How long a health check waits for each server.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: 200 when PostgreSQL — and Redis, when the server has a lock — answer within 2 s;
/// else 503 naming which did not.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "Every server answered", body = Health),
        (status = 503, description = "A server did not answer (unhealthy; `checks` says which)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> Response {
    let postgres = match state.repo.ping(HEALTH_TIMEOUT).await {
        Ok(()) => "ok".to_owned(),
        Err(error) => format!("error: {error}"),
    };
    let redis = match &state.lock {
        None => None,
        Some(lock) => Some(
            match tokio::time::timeout(HEALTH_TIMEOUT, lock.ping()).await {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(error)) => format!("error: {error}"),
                Err(_) => format!("error: no answer within {HEALTH_TIMEOUT:?}"),
            },
        ),
    };
    let failing: Vec<&str> = [
        (postgres != "ok").then_some("PostgreSQL"),
        redis.as_ref().is_some_and(|r| r != "ok").then_some("Redis"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut checks = serde_json::Map::new();
    checks.insert("postgres".to_owned(), postgres.into());
    if let Some(redis) = redis {
        checks.insert("redis".to_owned(), redis.into());
    }
    if failing.is_empty() {
        return Json(Health {
            status: "ok",
            checks,
        })
        .into_response();
    }
    Problem::unavailable(
        "unhealthy",
        "Unhealthy",
        format!("{} did not answer", failing.join(" and ")),
    )
    .with("checks", serde_json::Value::Object(checks))
    .into_response()
}

/// Any path the API does not have.
pub async fn not_found(method: Method, uri: Uri) -> Problem {
    Problem::not_found(format!("no endpoint {method} {}", uri.path()))
}

/// A path the API has, with a method it does not take.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("{} does not take {method}", uri.path()),
    )
}
