//! `GET /metrics`, in the Prometheus text format, through the `metrics` facade and its
//! Prometheus exporter:
//! - `booking_http_responses_total{status, mode}` — every response;
//! - `booking_duration_seconds{mode, outcome}` — a histogram of whole bookings;
//! - `booking_lock_acquired_total`, `booking_lock_busy_total`, `booking_lock_expired_total`
//!   `{mode}` — what each lock strategy's lock did (read from its counters when scraped).

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::AppState;
use crate::strategy::Mode;

/// Booking latency buckets, in seconds: from a hold-free booking to a long lock wait.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's recorder: installed once (the `metrics` macros write to one global recorder,
/// shared by every server of the process).
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "no metrics recorder; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

/// Installs the recorder (call before serving, so that the first requests are counted).
pub fn install() {
    let _ = handle();
}

/// Counts one response.
pub fn response(status: u16, mode: &str) {
    ::metrics::counter!(
        "booking_http_responses_total",
        "status" => status.to_string(),
        "mode" => mode.to_owned()
    )
    .increment(1);
}

/// Records one whole booking.
pub fn booking(mode: Mode, outcome: &'static str, took: Duration) {
    ::metrics::histogram!(
        "booking_duration_seconds",
        "mode" => mode.name(),
        "outcome" => outcome
    )
    .record(took.as_secs_f64());
}

/// Prometheus text: responses by status and mode, booking durations, lock counters.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"))
)]
pub async fn render(State(state): State<AppState>) -> Response {
    for (mode, strategy) in state.strategies.iter() {
        if let Some(lock) = strategy.stats().lock {
            let mode = mode.name();
            ::metrics::counter!("booking_lock_acquired_total", "mode" => mode)
                .absolute(lock.locks_acquired);
            ::metrics::counter!("booking_lock_busy_total", "mode" => mode)
                .absolute(lock.lock_busy_attempts);
            ::metrics::counter!("booking_lock_expired_total", "mode" => mode)
                .absolute(lock.locks_expired_before_release);
        }
    }
    let Some(handle) = handle() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no metrics recorder\n").into_response();
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}
