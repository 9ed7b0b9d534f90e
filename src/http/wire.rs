//! `serve`'s wire contract — its paths, its headers and the problem types of its refusals — in
//! one place that the server ([`super::router`], [`super::bookings`]) and its client
//! ([`crate::targets::serve`]) both use, so that neither can drift from the other.

use chrono::NaiveDate;

use crate::domain::Outcome;

/// `POST`: book. The body: `user_id`, `room_id`, `start_date`, `end_date`.
pub const BOOKINGS: &str = "/api/bookings";
/// `GET`: one booking.
pub const BOOKING: &str = "/api/bookings/{id}";
/// `GET ?from=&to=`: a room's nights.
pub const AVAILABILITY: &str = "/api/rooms/{id}/availability";
/// `GET`: `pong`, nothing else (a keep-alive connection's warm-up).
pub const PING: &str = "/ping";
pub const HEALTHZ: &str = "/healthz";
pub const METRICS: &str = "/metrics";
/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = "/openapi.json";

/// The header a request chooses its strategy with.
pub const MODE_HEADER: &str = "x-booking-mode";

/// The metric of `Server-Timing` that tells when a booking request arrived whole (its body
/// read), in microseconds on the server's monotonic clock: `Server-Timing: arrival;desc="812"`.
/// Clients compare the arrivals of a burst: their spread is how close together the requests
/// really reached the server, whatever the client thinks it sent.
pub const ARRIVAL_METRIC: &str = "arrival";

/// The `Server-Timing` value for an arrival `us` microseconds after the server's start.
pub fn arrival_timing(us: u64) -> String {
    format!("{ARRIVAL_METRIC};desc=\"{us}\"")
}

/// The arrival a `Server-Timing` value names, if it names one.
pub fn arrival_of(server_timing: &str) -> Option<u64> {
    server_timing.split(',').find_map(|metric| {
        let mut parts = metric.trim().split(';');
        if parts.next()?.trim() != ARRIVAL_METRIC {
            return None;
        }
        parts.find_map(|param| {
            let value = param.trim().strip_prefix("desc=")?;
            value.trim_matches('"').parse().ok()
        })
    })
}

/// Every problem `type` is this prefix and a kind (`/problems/sold-out`).
pub const PROBLEM_PREFIX: &str = "/problems/";

/// The kinds of the refusals — a booking that was refused, not an error — each the problem of
/// one [`Outcome`].
pub mod refusal {
    pub const SOLD_OUT: &str = "sold-out";
    pub const LOCK_BUSY: &str = "lock-busy";
    pub const RETRIES_EXHAUSTED: &str = "retries-exhausted";
    pub const FENCED_OUT: &str = "fenced-out";
    pub const LOCK_EXPIRED: &str = "lock-expired";
    pub const ON_HOLD: &str = "on-hold";
    pub const PAYMENT_FAILED: &str = "payment-failed";
    pub const HOLD_EXPIRED: &str = "hold-expired";
}

/// `/api/bookings/{id}` of one booking.
pub fn booking_path(id: i64) -> String {
    BOOKING.replace("{id}", &id.to_string())
}

/// `/api/rooms/{room}/availability`.
pub fn availability_path(room: impl std::fmt::Display) -> String {
    AVAILABILITY.replace("{id}", &room.to_string())
}

/// The outcome a refusal's problem `type` stands for (`night`: the one it names, else the
/// stay's first). `None` for a type that is not one of `serve`'s refusals.
pub fn refusal_outcome(problem_type: &str, night: NaiveDate) -> Option<Outcome> {
    let kind = problem_type.strip_prefix(PROBLEM_PREFIX)?;
    Some(match kind {
        refusal::SOLD_OUT => Outcome::SoldOut { night },
        // The lock is the server's: its key and attempts are not the client's to know.
        refusal::LOCK_BUSY => Outcome::LockNotAcquired {
            key: String::new(),
            attempts: 0,
        },
        refusal::RETRIES_EXHAUSTED => Outcome::RetriesExhausted { attempts: 0 },
        refusal::FENCED_OUT => Outcome::FencedOut { night },
        refusal::LOCK_EXPIRED => Outcome::LockExpired { key: String::new() },
        refusal::ON_HOLD => Outcome::OnHold { night },
        refusal::PAYMENT_FAILED => Outcome::PaymentFailed,
        refusal::HOLD_EXPIRED => Outcome::HoldExpired,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_kind_maps_back_to_the_outcome_it_stands_for() {
        let night = NaiveDate::from_ymd_opt(2024, 12, 25).unwrap_or_default();
        for (kind, outcome) in [
            (refusal::SOLD_OUT, "sold_out"),
            (refusal::LOCK_BUSY, "lock_not_acquired"),
            (refusal::RETRIES_EXHAUSTED, "retries_exhausted"),
            (refusal::FENCED_OUT, "fenced_out"),
            (refusal::LOCK_EXPIRED, "lock_expired"),
            (refusal::ON_HOLD, "on_hold"),
            (refusal::PAYMENT_FAILED, "payment_failed"),
            (refusal::HOLD_EXPIRED, "hold_expired"),
        ] {
            let mapped = refusal_outcome(&format!("{PROBLEM_PREFIX}{kind}"), night);
            assert_eq!(mapped.map(|o| o.kind()), Some(outcome), "{kind}");
        }
        assert!(refusal_outcome("/problems/internal", night).is_none());
        assert_eq!(arrival_of(&arrival_timing(812)), Some(812));
        assert_eq!(arrival_of("db;dur=53, arrival;desc=\"7\""), Some(7));
        assert_eq!(arrival_of("db;dur=53"), None);
        assert!(refusal_outcome("https://example.com/out-of-stock", night).is_none());
        assert_eq!(booking_path(7), "/api/bookings/7");
        assert_eq!(availability_path(3), "/api/rooms/3/availability");
    }
}
