//! The library's error types.
//!
//! Refusals (sold out, lock busy) are [`Outcome`](crate::domain::Outcome)s, not errors. What is
//! left splits in two, because the exit code differs: [`InputError`] is the user's to fix (exit
//! 2, nothing written), everything else in [`BookingError`] is the environment's (exit 1).

use chrono::NaiveDate;

use crate::domain::{RoomId, StayError};

/// Input that parsed but does not fit the hotel, or a setting that cannot be used. Found before
/// anything is written.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("room {room} does not exist (--room); `booking-cli db reset` seeds rooms 1-10")]
    UnknownRoom { room: RoomId },
    /// A night without an inventory row is not "available": the reference implementation's
    /// check read no row as no conflict and sold nights the hotel never offered.
    #[error("room {room} has no inventory on {night} (--from/--nights/--to)")]
    NoInventory { room: RoomId, night: NaiveDate },
    #[error(transparent)]
    Stay(#[from] StayError),
    /// A combination of flags that cannot work; the message names them.
    #[error("{0}")]
    Invalid(String),
    /// A connection URL that cannot be parsed. The message never repeats the URL itself: it
    /// may hold a password.
    #[error("{variable} is not a valid {what} URL: {reason}")]
    BadUrl {
        variable: &'static str,
        what: &'static str,
        reason: String,
    },
}

/// SQLSTATEs after which running the same transaction again may succeed: `40001`
/// serialization_failure and `40P01` deadlock_detected.
const RETRYABLE_SQLSTATES: [&str; 2] = ["40001", "40P01"];

/// Why a booking attempt failed (as opposed to being refused).
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// `batched`: the statement of the batch this booking was in failed; every booking of the
    /// batch shares its error.
    #[error("database error: {0}")]
    Batch(std::sync::Arc<sqlx::Error>),
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The database disagrees with itself in a way no strategy should cause (say, a concurrent
    /// `db reset` removed rows mid-booking).
    #[error("inconsistent state: {0}")]
    Inconsistent(String),
    /// The users ran, but the final state could not be read: there is no verdict.
    #[error("{tally}; the final state could not be read, so there is no verdict: {source}")]
    Unjudged {
        tally: String,
        #[source]
        source: sqlx::Error,
    },
    /// A remote target (`stress --target`, `race`) gave no answer, or one that is not about
    /// the booking (a 5xx): it may or may not have written. The target says what, in words.
    #[error("{0}")]
    Target(String),
    /// `--lock-renew`: a held lock could not be renewed, so the booking was abandoned.
    #[error("{0}; booking abandoned")]
    LockLost(String),
}

/// SQLSTATE classes and codes of a server that cannot serve right now: connection exceptions
/// (08), insufficient resources (53: too many connections, out of memory, disk full), operator
/// intervention (57P01-57P05: shutdown, crash, cannot connect now, idle timeouts).
fn is_unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}

/// Whether `error` says PostgreSQL is unreachable or unwilling, not that the statement is wrong.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| is_unavailable_sqlstate(&c)),
        _ => false,
    }
}

impl BookingError {
    /// PostgreSQL's own message and SQLSTATE, for an error the server returned: `could not
    /// serialize access due to concurrent update (40001)`.
    pub fn server_message(&self) -> Option<String> {
        match self.database() {
            Some(sqlx::Error::Database(db)) => Some(match db.code() {
                Some(code) => format!("{} ({code})", db.message()),
                None => db.message().to_owned(),
            }),
            _ => None,
        }
    }

    /// Which server could not be reached or did not answer — PostgreSQL (its pool timed out, its
    /// connection broke, it is shutting down or has no slot free) or the lock's Redis — as
    /// opposed to a fault of this program: `serve` answers these `503` with `Retry-After`,
    /// never `500`.
    pub fn unavailable(&self) -> Option<&'static str> {
        match self {
            BookingError::Lock(_) | BookingError::LockLost(_) => Some("redis"),
            BookingError::Database(_) | BookingError::Batch(_) => self
                .database()
                .filter(|error| is_unavailable(error))
                .map(|_| "postgres"),
            _ => None,
        }
    }

    /// The PostgreSQL error, whether this booking's own or its batch's.
    fn database(&self) -> Option<&sqlx::Error> {
        match self {
            BookingError::Database(error) => Some(error),
            BookingError::Batch(error) => Some(error),
            _ => None,
        }
    }

    /// Whether PostgreSQL aborted the transaction because of a concurrent one (serialization
    /// failure or deadlock), so that retrying the whole transaction is the right answer.
    pub fn is_retryable(&self) -> bool {
        match self.database() {
            Some(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|code| RETRYABLE_SQLSTATES.contains(&code.as_ref())),
            _ => false,
        }
    }
}

/// Why the lock service failed (Redis, a Redlock quorum, the failover lab). It lives here, with
/// every other error type, so that `error` needs nothing of `lock`.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redlock: fewer instances than a majority answered, so no lock can be held.
    #[error("redlock: no quorum, {answered} of {of} Redis instances answered")]
    NoQuorum { answered: usize, of: usize },
    /// A fault of the failover lab that could not be injected (see `lock::failover`).
    #[error("{0}")]
    Chaos(String),
}
