//! The repository: every SQL statement of booking-cli lives in this folder, one function per
//! operation, every value bound as a parameter — one file per concern: `schema.rs` (reset,
//! migrate, seed), `slots.rs` (a slot prepared and read back), `tx.rs` (a booking's steps),
//! `stay.rs` (a stay in one statement), `holds.rs` (`reserve`), `shards.rs` (`sharded`),
//! `batch.rs` (`batched`), `ops.rs` (the lab's server-side tools). Shared here: the types they
//! return, [`Repo`] itself and the client-side deadline.
//!
//! Two kinds of operation: pool-level ones on [`Repo`] (schema, seeding, preparing and reading a
//! slot), and the steps of a booking on [`BookingTx`], a transaction a strategy drives step by
//! step so that the *order* of the steps — the thing the strategies differ in — stays visible in
//! the strategy's own file.
//!
//! Every statement names its tables without a schema: the connection's `search_path` is
//! `booking_cli` alone (see [`crate::db`]), so they can only be booking-cli's own. The statements
//! that drop or create the schema name it in full.
//!
//! **Every statement has a client-side deadline** (`--db-timeout`): [`within`] gives up on an
//! answer that does not come in time. A server-side `statement_timeout` is no substitute: a
//! server that is stalled (SIGSTOP, a frozen VM, a network that drops packets) cannot cancel
//! anything. A transaction abandoned this way is never committed by this tool; sqlx rolls it
//! back when the connection is next usable, and if it never is, the server rolls it back when
//! the connection closes.

use std::time::Duration;

use chrono::NaiveDate;
use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::{BookingRequest, RoomId, Stay};
use crate::error::{BookingError, InputError};

mod batch;
mod holds;
mod ops;
mod schema;
mod shards;
mod slots;
mod stay;
mod tx;

pub use batch::Batch;
pub use holds::HoldEnd;
pub use schema::{DEFAULT_SHARDS, SCHEMA, SeedPlan, SeedSummary};
pub use shards::{ShardTake, Take};
pub use stay::Claimed;
pub use tx::BookingTx;

/// A connection that broke under its `BEGIN` (its server restarted or closed it), as opposed to
/// a server that cannot be reached (refused: a new connection would fail the same way) or one
/// that does not answer (our own deadline).
fn is_dead_connection(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(io) => !matches!(
            io.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::ConnectionRefused
        ),
        sqlx::Error::Protocol(_) => true,
        // 57P01: terminating connection due to administrator command (a restart).
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P01"),
        _ => false,
    }
}

/// Awaits one statement for at most `limit`: the client-side deadline every PostgreSQL call has.
pub async fn within<T>(
    limit: Duration,
    statement: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(limit, statement)
        .await
        .unwrap_or_else(|_| Err(timed_out(limit)))
}

/// The error of a statement that got no answer within `limit`.
pub fn timed_out(limit: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "no answer from PostgreSQL within {} (--db-timeout)",
            humantime::format_duration(limit)
        ),
    ))
}

/// The final state of one night of a slot, read from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NightState {
    pub room: RoomId,
    pub night: NaiveDate,
    pub total_inventory: i32,
    pub booked_count: i32,
    /// Confirmed booking rows whose stay covers this night.
    pub confirmed_bookings: i64,
    /// Holds (`reserve`) covering this night that have been neither confirmed nor given back:
    /// each is counted in `booked_count`.
    pub held_bookings: i64,
    /// Confirmed bookings of this night whose confirmation came after their hold's expiry: the
    /// room may have been given to someone else meanwhile.
    pub confirmed_after_expiry: i64,
}

impl NightState {
    /// The rows that hold a room: confirmed bookings and holds not yet given back.
    pub fn taken(&self) -> i64 {
        self.confirmed_bookings + self.held_bookings
    }

    /// More sold than the hotel has: by the counter, or by the rows.
    pub fn oversold(&self) -> bool {
        let total = i64::from(self.total_inventory);
        i64::from(self.booked_count) > total || self.taken() > total
    }

    /// The counter disagrees with the rows: an increment was lost (or one was made without
    /// its row).
    pub fn drifted(&self) -> bool {
        self.taken() != i64::from(self.booked_count)
    }

    /// The core definition of `overbooked`: oversold, or drifted.
    pub fn overbooked(&self) -> bool {
        self.oversold() || self.drifted()
    }

    /// Rooms left, by the rows (the truth) and by the counter, whichever is fewer.
    pub fn free(&self) -> i64 {
        let total = i64::from(self.total_inventory);
        (total - self.taken()).min(total - i64::from(self.booked_count))
    }
}

/// One booking row, as `GET /api/bookings/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct BookingRow {
    pub id: i64,
    pub user_id: uuid::Uuid,
    pub room_id: i32,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub status: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// What the availability check of a booking found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Every night of the stay has `booked_count < total_inventory`; the counts as read, in
    /// date order.
    Free { booked: Vec<(NaiveDate, i32)> },
    /// The first night that does not.
    SoldOut { night: NaiveDate },
}

/// Pool-level operations. Cheap to clone (the pool is an `Arc`).
#[derive(Debug, Clone)]
pub struct Repo {
    pool: PgPool,
    /// The client-side deadline of every statement (`--db-timeout`).
    limit: Duration,
}

/// What claiming a night's fencing token found (see `strategy::fenced`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The token is newer than every token claimed for the night before: it is the night's now.
    Claimed,
    /// A token at least as new was claimed already: `stored`, the newest the night has seen.
    Behind { stored: i64 },
}

impl Repo {
    pub fn new(pool: PgPool, limit: Duration) -> Self {
        Self { pool, limit }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The deadline of every statement.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Closes the pool, waiting at most the deadline for connections in use to come back (one
    /// stuck on a stalled server never would).
    pub async fn close(&self) {
        let _ = tokio::time::timeout(self.limit, self.pool.close()).await;
    }

    /// How many connections the pool opens at most.
    pub fn pool_size(&self) -> u32 {
        self.pool.options().get_max_connections()
    }

    /// A statement that is safe to repeat (a read, a `BEGIN`): on a pooled connection that
    /// turned out dead (its server restarted), once more on another, up to once per pooled
    /// connection (each dead one is closed on its way back: sqlx tests what is released).
    async fn repeatable<T, F, Fut>(&self, statement: F) -> Result<T, sqlx::Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let attempts = self.pool.options().get_max_connections() + 1;
        let mut tries = 0;
        loop {
            tries += 1;
            match within(self.limit, statement()).await {
                Err(error) if tries < attempts && is_dead_connection(&error) => {
                    tracing::debug!(%error, "a pooled connection was dead; taking another");
                }
                other => return other,
            }
        }
    }
}
