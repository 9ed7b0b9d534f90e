//! The words of the booking domain, parsed once and never raw again.
//!
//! Every value a user types (`--user`, `--room`, `--from`, `--nights`, `--to`) is turned into one
//! of these types while the command line is parsed, so the strategies and the repository never
//! see an unchecked string. Each parser's error message is written to be shown as it is, after
//! clap's "invalid value '…' for '--flag'".

use std::fmt;
use std::str::FromStr;

use chrono::{Days, NaiveDate};
use serde::Serialize;
use uuid::Uuid;

/// The longest stay the tool accepts. A bound keeps `--nights 4000000000` from allocating a
/// lock key per night; a real hotel would not sell a year in one booking either.
pub const MAX_NIGHTS: u32 = 366;

/// A room type of the hotel (`rooms.id`). Positive, as in the schema.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct RoomId(i32);

impl RoomId {
    pub fn new(id: i32) -> Result<Self, String> {
        if id > 0 {
            Ok(Self(id))
        } else {
            Err(format!("room ids are positive integers, got {id}"))
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

impl FromStr for RoomId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id: i32 = s
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not a room id (a positive integer)"))?;
        Self::new(id)
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The guest making a booking (`bookings.user_id`, a UUID column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(Uuid);

impl UserId {
    /// A fresh random (v4) user, as each simulated user of `stress` is.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for UserId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl FromStr for UserId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| format!("'{s}' is not a UUID (e.g. 6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f)"))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses a calendar date written `YYYY-MM-DD`, rejecting impossible ones such as 2024-02-30.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("'{s}' is not a valid date (expected YYYY-MM-DD, e.g. 2024-12-25)"))
}

/// A number of nights: at least one, at most [`MAX_NIGHTS`].
pub fn parse_nights(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of nights"))?;
    match n {
        0 => Err("a stay is at least 1 night".to_owned()),
        n if n > MAX_NIGHTS => Err(format!("a stay is at most {MAX_NIGHTS} nights")),
        n => Ok(n),
    }
}

/// The nights of a stay: from `from` (the first night) up to `to`, exclusive — the day the guest
/// leaves, as in `bookings.end_date`. Never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Stay {
    from: NaiveDate,
    to: NaiveDate,
}

/// Why a stay could not be formed; the message names the flags involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StayError {
    #[error("--to {to} must be after --from {from} (the day the guest leaves, exclusive)")]
    NotAfter { from: NaiveDate, to: NaiveDate },
    #[error("a stay is at most {MAX_NIGHTS} nights (--from {from} to --to {to})")]
    TooLong { from: NaiveDate, to: NaiveDate },
    #[error("--from {from} plus {nights} nights is past the end of the calendar")]
    OutOfCalendar { from: NaiveDate, nights: u32 },
    #[error(
        "--from {from} is before the first date PostgreSQL stores (4714-11-24 BC, written -4713-11-24)"
    )]
    BeforePostgres { from: NaiveDate },
}

/// The first day PostgreSQL's `date` holds (Julian day 0, 4714-11-24 BC; chrono counts years
/// astronomically, so -4713). Its last, 5874897-12-31, is past chrono's own calendar.
fn first_postgres_date() -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(-4713, 11, 24)
}

impl Stay {
    /// The stay that starts on `from` and lasts `nights` nights.
    pub fn nights_from(from: NaiveDate, nights: u32) -> Result<Self, StayError> {
        let to = from
            .checked_add_days(Days::new(u64::from(nights)))
            .ok_or(StayError::OutOfCalendar { from, nights })?;
        Self::between(from, to)
    }

    /// The stay from `from` to `to` (exclusive).
    pub fn between(from: NaiveDate, to: NaiveDate) -> Result<Self, StayError> {
        if to <= from {
            return Err(StayError::NotAfter { from, to });
        }
        if first_postgres_date().is_some_and(|first| from < first) {
            return Err(StayError::BeforePostgres { from });
        }
        if (to - from).num_days() > i64::from(MAX_NIGHTS) {
            return Err(StayError::TooLong { from, to });
        }
        Ok(Self { from, to })
    }

    /// The first night.
    pub fn from(&self) -> NaiveDate {
        self.from
    }

    /// The day the guest leaves (not a night of the stay).
    pub fn to(&self) -> NaiveDate {
        self.to
    }

    /// How many nights the stay has (≥ 1).
    pub fn len(&self) -> u32 {
        // Bounded by MAX_NIGHTS in the constructors, so the cast cannot truncate.
        (self.to - self.from).num_days() as u32
    }

    /// A stay is never empty; this exists for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Every night of the stay, in ascending date order — the order in which locks are taken.
    pub fn nights(&self) -> impl Iterator<Item = NaiveDate> + use<> {
        self.from.iter_days().take_while({
            let to = self.to;
            move |d| *d < to
        })
    }
}

impl fmt::Display for Stay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.len();
        let unit = if n == 1 { "night" } else { "nights" };
        write!(f, "{} → {} ({n} {unit})", self.from, self.to)
    }
}

/// One request to book: who, which room, which nights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BookingRequest {
    pub user: UserId,
    pub room: RoomId,
    pub stay: Stay,
}

/// What a booking attempt ended in, when it did not fail. Refusals are outcomes, not errors: a
/// sold-out night and a lock that stayed busy are the normal answers of a correct system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `201 Created`: the booking row exists and every night's `booked_count` was incremented.
    Created { booking_id: i64 },
    /// `409 Conflict`: this night had no room left when it was checked.
    SoldOut { night: NaiveDate },
    /// `409 Conflict`: the lock on this key stayed held by someone else for every attempt.
    LockNotAcquired { key: String, attempts: u32 },
    /// `409 Conflict`: the transaction hit a serialization failure or deadlock on every attempt
    /// and the retry budget ran out.
    RetriesExhausted { attempts: u32 },
    /// `409 Conflict`: the write carried a fencing token older than one claimed since — this
    /// user's lock had expired and a newer holder had taken the night. Rolled back.
    FencedOut { night: NaiveDate },
    /// `409 Conflict`: the lock on this key (a Redlock) stopped being valid before the booking
    /// could commit, so its transaction was rolled back: a commit after the validity would rely
    /// on a lock the majority may already have handed to someone else.
    LockExpired { key: String },
    /// `503 Service Unavailable` (`reserve`): every room of this night is sold or on hold, and
    /// some are on hold — their payments may still fail and give them back, so trying again
    /// may succeed. Nothing was written.
    OnHold { night: NaiveDate },
    /// `402 Payment Required` (`reserve`): the simulated payment failed (`--fail-rate`); the
    /// hold was cancelled and its nights given back.
    PaymentFailed,
    /// `409 Conflict` (`reserve`): the payment outlasted the hold (`--lock-ttl-ms`), so it was
    /// not confirmed; its nights were given back.
    HoldExpired,
    /// Not booked because the run was interrupted (Ctrl-C) before this user started, or while
    /// it waited for a lock or a retry. Nothing was written.
    Interrupted,
    /// The target acknowledged a success in terms of its own — a `race` endpoint's success
    /// response, a 2xx of `serve` other than 201 — whose booking is in its own database, where
    /// the invariant must find it. What exactly it answered is the target's to count.
    Acknowledged,
    /// The target refused in terms of its own — any other answer of a `race` endpoint, a
    /// refusal of `serve` whose problem type is not one of booking-cli's — counted as refused.
    Declined,
}

impl Outcome {
    /// The HTTP status the reference API answered with for this outcome.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Created { .. } => 201,
            Outcome::SoldOut { .. }
            | Outcome::LockNotAcquired { .. }
            | Outcome::RetriesExhausted { .. }
            | Outcome::FencedOut { .. }
            | Outcome::LockExpired { .. }
            | Outcome::HoldExpired => 409,
            Outcome::OnHold { .. } => 503,
            Outcome::PaymentFailed => 402,
            Outcome::Interrupted => 499,
            // The target's own answer is in its stats; the class is what the reference API
            // would answer.
            Outcome::Acknowledged => 200,
            Outcome::Declined => 400,
        }
    }

    /// The outcome's name in reports and JSON (`created`, `sold_out`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Created { .. } => "created",
            Outcome::SoldOut { .. } => "sold_out",
            Outcome::LockNotAcquired { .. } => "lock_not_acquired",
            Outcome::RetriesExhausted { .. } => "retries_exhausted",
            Outcome::FencedOut { .. } => "fenced_out",
            Outcome::LockExpired { .. } => "lock_expired",
            Outcome::OnHold { .. } => "on_hold",
            Outcome::PaymentFailed => "payment_failed",
            Outcome::HoldExpired => "hold_expired",
            Outcome::Interrupted => "interrupted",
            Outcome::Acknowledged => "accepted",
            Outcome::Declined => "rejected",
        }
    }

    /// Whether the outcome named `kind` is a success the target acknowledged.
    pub fn kind_is_success(kind: &str) -> bool {
        matches!(kind, "created" | "accepted")
    }

    /// Whether the outcome named `kind` is a refusal (neither a success nor an interruption).
    pub fn kind_is_refusal(kind: &str) -> bool {
        !Outcome::kind_is_success(kind) && kind != "interrupted"
    }

    /// A success the target acknowledged.
    pub fn is_success(&self) -> bool {
        Outcome::kind_is_success(self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn a_stay_of_two_nights_lists_both_nights_in_order() {
        let stay = Stay::nights_from(date("2024-12-31"), 2).unwrap();
        let nights: Vec<_> = stay.nights().collect();
        assert_eq!(nights, vec![date("2024-12-31"), date("2025-01-01")]);
        assert_eq!(stay.to(), date("2025-01-02"));
        assert_eq!(stay.len(), 2);
    }

    #[test]
    fn a_stay_before_postgres_first_date_is_refused() {
        let from = NaiveDate::from_ymd_opt(-5000, 1, 1).unwrap();
        assert_eq!(
            Stay::nights_from(from, 1),
            Err(StayError::BeforePostgres { from })
        );
        let first = NaiveDate::from_ymd_opt(-4713, 11, 24).unwrap();
        assert!(Stay::nights_from(first, 1).is_ok());
    }

    #[test]
    fn to_must_be_after_from() {
        let d = date("2024-12-25");
        assert_eq!(
            Stay::between(d, d),
            Err(StayError::NotAfter { from: d, to: d })
        );
        assert!(Stay::between(d, date("2024-12-24")).is_err());
    }

    #[test]
    fn a_stay_longer_than_the_maximum_is_refused() {
        let from = date("2024-01-01");
        assert!(Stay::nights_from(from, MAX_NIGHTS).is_ok());
        assert!(matches!(
            Stay::nights_from(from, MAX_NIGHTS + 1),
            Err(StayError::TooLong { .. })
        ));
    }

    #[test]
    fn impossible_and_malformed_dates_are_refused() {
        assert!(parse_date("2024-02-30").is_err());
        assert!(parse_date("25/12/2024").is_err());
        assert!(parse_date("2024-12-25").is_ok());
    }

    #[test]
    fn zero_nights_is_refused_with_a_reason() {
        assert_eq!(
            parse_nights("0"),
            Err("a stay is at least 1 night".to_owned())
        );
        assert_eq!(parse_nights("3"), Ok(3));
        assert!(parse_nights("-1").is_err());
    }

    #[test]
    fn room_ids_are_positive() {
        assert!("0".parse::<RoomId>().is_err());
        assert!("-4".parse::<RoomId>().is_err());
        assert!("abc".parse::<RoomId>().is_err());
        assert_eq!("7".parse::<RoomId>().unwrap().get(), 7);
    }

    #[test]
    fn user_ids_must_be_uuids() {
        assert!("user_1_0".parse::<UserId>().is_err());
        assert!(
            "6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f"
                .parse::<UserId>()
                .is_ok()
        );
    }
}
