//! `serve`'s flags.

use super::*;

/// `serve`: the booking API.
#[derive(Debug, Args)]
#[command(after_help = "\
Endpoints:
  POST /api/bookings                 {\"user_id\": UUID, \"room_id\": 1, \"start_date\": \"2024-12-25\", \"end_date\": \"2024-12-26\"}
                                     201 created, 409 sold out, 503 lock busy (Retry-After); header X-Booking-Mode picks the strategy
  GET  /api/bookings/{id}            the booking, or 404
  GET  /api/rooms/{id}/availability?from=YYYY-MM-DD&to=YYYY-MM-DD
  GET  /ping, /healthz, /metrics     liveness, PostgreSQL and Redis health, Prometheus text
Errors are application/problem+json (400, 404, 405, 413, 415, 422, 500, 503).

Examples:
  booking-cli serve                                   # http://127.0.0.1:8080, --mode locked
  booking-cli serve --listen 127.0.0.1:8081 --mode naive
  curl -si -H 'Content-Type: application/json' -d '{\"user_id\":\"6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f\",\"room_id\":1,\"start_date\":\"2024-12-25\",\"end_date\":\"2024-12-26\"}' http://127.0.0.1:8080/api/bookings

Exit status: 0 after a graceful shutdown (SIGTERM or Ctrl-C), 1 runtime error (e.g. the address is
in use, or bookings still running after the drain deadline), 2 bad input.")]
#[command(next_help_heading = "Server")]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(
        long,
        env = "BOOKING_LISTEN",
        hide_env_values = true,
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: std::net::SocketAddr,

    /// The strategy of a request without an X-Booking-Mode header
    #[arg(long, value_enum, default_value_t = Mode::Locked)]
    pub mode: Mode,

    #[command(flatten)]
    pub work: WorkArgs,

    /// Status of a refusal worth retrying (lock busy, retries exhausted): 503 with Retry-After,
    /// or 409 as the original API answered, for old load scripts
    #[arg(long, value_name = "STATUS", default_value = "503", value_parser = ["503", "409"], help_heading = "Server")]
    pub busy_status: String,

    /// Deadline of one whole booking (503 after it)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, help_heading = "Server")]
    pub booking_timeout: std::time::Duration,

    /// Bookings in flight at most; more are answered 503 at once instead of queueing
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000), help_heading = "Server")]
    pub max_in_flight: u32,

    /// How long a shutdown waits for the bookings in flight
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, help_heading = "Server")]
    pub drain: std::time::Duration,

    /// How long a client may take to send a request's headers — and to start one at all on a
    /// new or idle keep-alive connection — before the connection is closed
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, help_heading = "Server")]
    pub header_timeout: std::time::Duration,

    /// How long a client may take to send a request's body once its headers are in (408 after
    /// it)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, help_heading = "Server")]
    pub body_timeout: std::time::Duration,

    /// Open connections at most; further clients wait in the listen queue until one closes
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000), help_heading = "Server")]
    pub max_connections: u32,
}
