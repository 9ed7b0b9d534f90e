//! `serve`: the original booking API over HTTP. It and its client (`stress --target`,
//! [`crate::targets::serve`]) are adapters over the same strategies and repository: a booking made
//! over HTTP runs exactly the code `book` and `stress` run.
//!
//! - [`bookings`]: the handlers — parse the request into the domain types `book` builds from its
//!   flags, call the strategy, map its [`Outcome`](crate::domain::Outcome) to a status in one
//!   function;
//! - [`problem`]: every error as one `application/problem+json` body;
//! - [`metrics`]: the Prometheus text at `/metrics`;
//! - [`wire`]: the contract — paths, headers, the problem types of refusals — that the server
//!   and its client ([`crate::targets::serve`], `stress --target`) share.
//!
//! **Operations.** A body limit (16 KiB), a cap on bookings in flight (503 beyond it, not an
//! unbounded queue), a deadline for the whole booking (503), a request id per request
//! (`X-Request-Id`, echoed or generated), one access-log line per request at `-v`, and a graceful
//! shutdown on SIGTERM or Ctrl-C: stop accepting, tell lock waiters to give up, let the bookings
//! in flight finish (and release their locks) up to a deadline.
//!
//! **A client that disconnects** does not cancel its booking: the booking runs in a task of its
//! own, so it completes or rolls back whole — never half-way because a socket closed.

pub mod bookings;
pub mod listen;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::lock::RedisLock;
use crate::lock::redlock::RedLock;
use crate::repo::Repo;
use crate::stop::Stop;
use crate::strategy::{self, Mode, Strategy, Tuning};

/// Microseconds since this process first asked: the server's monotonic clock of
/// `Server-Timing: arrival` ([`wire::ARRIVAL_METRIC`]).
pub fn monotonic_us() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The largest request body accepted (413 beyond).
pub const BODY_LIMIT: usize = 16 * 1024;

/// The header a request chooses its strategy with.
pub use wire::MODE_HEADER;

/// How the server books, and its limits.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The strategy of a request without `X-Booking-Mode`.
    pub mode: Mode,
    /// The status of a refusal that is worth retrying (lock busy, retries exhausted): 503, or
    /// 409 as the original API answered (`--busy-status 409`).
    pub busy_status: StatusCode,
    /// The deadline of one whole booking (503 after it).
    pub booking_timeout: Duration,
    /// Bookings in flight at most; more are answered 503 at once.
    pub max_in_flight: usize,
    /// How long a shutdown waits for the bookings in flight.
    pub drain: Duration,
    /// How long a client may take to start a request and send its headers.
    pub header_timeout: Duration,
    /// How long a client may take to send a body once its headers are in (408).
    pub body_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub repo: Repo,
    /// One strategy per mode this server can run (those whose servers it reached).
    pub strategies: Arc<HashMap<Mode, Arc<dyn Strategy>>>,
    /// Why the other modes cannot run (e.g. "needs Redis, which did not answer").
    pub unavailable: Arc<HashMap<Mode, String>>,
    /// The Redis the default mode locks on, for `/healthz`.
    pub lock: Option<RedisLock>,
    pub settings: Arc<ServeSettings>,
    /// Permits for bookings in flight.
    pub slots: Arc<Semaphore>,
    pub in_flight: InFlight,
}

/// What the server books with: the same parts `book` and `stress` hand a strategy.
pub struct Setup {
    pub repo: Repo,
    /// The Redis lock, if Redis answered at start.
    pub lock: Option<RedisLock>,
    pub redlock: Option<RedLock>,
    /// How a booking works and waits: hold, lock policy, retries, payments.
    pub tuning: Tuning,
    /// Fired at shutdown: lock waiters give up.
    pub stop: Stop,
}

impl AppState {
    /// One strategy per mode whose servers are reachable; the others are listed with the
    /// reason a request for them gets.
    pub fn new(setup: Setup, settings: ServeSettings) -> Self {
        let mut strategies = HashMap::new();
        let mut unavailable = HashMap::new();
        for &mode in Mode::ALL {
            let built = strategy::build(
                mode,
                strategy::Context {
                    repo: setup.repo.clone(),
                    // Counters of its own per strategy, so /metrics tells the modes apart.
                    lock: setup.lock.as_ref().map(RedisLock::with_fresh_stats),
                    redlock: setup.redlock.clone(),
                    tuning: setup.tuning,
                    stop: setup.stop.clone(),
                },
            );
            match built {
                Ok(built) => {
                    strategies.insert(mode, built);
                }
                Err(error) => {
                    unavailable.insert(mode, format!("{error}: Redis did not answer at start"));
                }
            }
        }
        Self {
            repo: setup.repo,
            strategies: Arc::new(strategies),
            unavailable: Arc::new(unavailable),
            lock: setup.lock.filter(|_| settings.mode.needs_redis()),
            slots: Arc::new(Semaphore::new(settings.max_in_flight)),
            settings: Arc::new(settings),
            in_flight: InFlight::default(),
        }
    }
}

/// Counts the bookings running in their own tasks, so that a shutdown can wait for them —
/// including those whose client has gone.
#[derive(Clone, Default)]
pub struct InFlight {
    inner: Arc<(AtomicUsize, Notify)>,
}

/// One booking in flight; counted until dropped.
pub struct Tracked(InFlight);

impl InFlight {
    pub fn track(&self) -> Tracked {
        self.inner.0.fetch_add(1, Ordering::SeqCst);
        Tracked(self.clone())
    }

    pub fn count(&self) -> usize {
        self.inner.0.load(Ordering::SeqCst)
    }

    /// Waits until no booking is in flight, or `limit` has passed; says whether they all ended.
    pub async fn drained(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.inner.1.notified();
            if self.count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count() == 0;
            }
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.inner.0.fetch_sub(1, Ordering::SeqCst);
        self.0.inner.1.notify_waiters();
    }
}

impl ServeSettings {
    /// `serve`'s defaults, with `mode`.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            busy_status: StatusCode::SERVICE_UNAVAILABLE,
            booking_timeout: Duration::from_secs(30),
            max_in_flight: 64,
            drain: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// The router: every endpoint, the problem+json fallbacks, and the layers.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    // The outer time-out is a backstop behind the booking's own deadline (which answers a
    // problem+json 503 itself): nothing may hold a connection forever.
    let backstop = state.settings.booking_timeout + Duration::from_secs(5);
    Router::new()
        .route(
            wire::BOOKINGS,
            post(bookings::create).layer(middleware::from_fn_with_state(state.clone(), whole_body)),
        )
        .route(wire::BOOKING, get(bookings::show))
        .route(wire::AVAILABILITY, get(bookings::availability))
        .route(wire::PING, get(bookings::ping))
        .route(wire::HEALTHZ, get(bookings::healthz))
        .route(wire::METRICS, get(metrics::render))
        .route(wire::OPENAPI, get(openapi::serve))
        .fallback(bookings::not_found)
        .method_not_allowed_fallback(bookings::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(access_log))
        .layer(TraceLayer::new_for_http())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            backstop,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Reads a booking's body whole, within `--body-timeout` of its headers: a client whose body
/// stops short of its `Content-Length` is answered `408` now, rather than holding a connection
/// and a task until the booking's deadline. Over [`BODY_LIMIT`], `413`.
async fn whole_body(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    use axum::response::IntoResponse as _;
    let (parts, body) = request.into_parts();
    let limit = state.settings.body_timeout;
    match tokio::time::timeout(limit, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Ok(Err(error)) => {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            if too_large {
                problem::Problem::payload_too_large().into_response()
            } else {
                problem::Problem::bad_request(None, format!("the body could not be read: {error}"))
                    .into_response()
            }
        }
        Err(_) => problem::Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            "Request timeout",
            format!(
                "the body did not arrive within {} of its headers (--body-timeout)",
                humantime::format_duration(limit)
            ),
        )
        .into_response(),
    }
}

/// One line per request at `-v`: method, path, status, latency, mode, request id; and the
/// responses-by-status-and-mode counter of `/metrics`.
async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = header_text(request.headers(), "x-request-id");
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let mode = header_text(response.headers(), MODE_HEADER);
    metrics::response(status, &mode);
    tracing::info!(
        %method,
        path,
        status,
        latency_ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        mode,
        request_id,
        "request"
    );
    response
}

fn header_text(headers: &axum::http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// Serves `state` on `listener` until `shutdown` resolves; then stops accepting, tells lock
/// waiters to give up (`stop`), and waits for the bookings in flight — those of clients that
/// left too — up to the drain deadline. Says whether every booking ended in time.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    stop: Stop,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<bool> {
    metrics::install();
    let in_flight = state.in_flight.clone();
    let drain = state.settings.drain;
    let limits = listen::Limits {
        header_timeout: state.settings.header_timeout,
        max_connections: state.settings.max_connections,
    };
    let app = router(state);
    let stopping = Stop::new();
    let signal = {
        let (stop, stopping) = (stop.clone(), stopping.clone());
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; finishing the bookings in flight");
            stopping.stop();
            stop.stop();
        }
    };
    let server = listen::serve(listener, app, limits, signal);
    // The graceful drain itself has a deadline: a client that keeps its connection busy cannot
    // hold the shutdown forever.
    tokio::select! {
        () = server => {}
        () = async { stopping.stopped().await; tokio::time::sleep(drain).await } => {
            tracing::warn!("connections still open after the drain deadline; closing them");
        }
    }
    Ok(in_flight.drained(drain).await)
}
