//! Connecting to PostgreSQL, and `db reset`.
//!
//! Every way of reaching the server is bounded in time: a probe connection under
//! [`CONNECT_TIMEOUT`] before any pool is built (so a wrong URL or a stopped server is one clear
//! error within seconds, not a pool's generic time-out), an acquire time-out on the pool, and a
//! server-side `statement_timeout` on every connection.

use std::str::FromStr;
use std::time::Duration;

use chrono::NaiveDate;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection as _, PgPool, Postgres};
use tokio::task::JoinSet;

use crate::domain::RoomId;
use crate::error::InputError;
use crate::repo::{Repo, SeedPlan, SeedSummary};

/// How long connecting (and waiting for a pooled connection) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The server cancels any statement that runs longer, so that a statement stuck behind a lock
/// ends as an error instead of a hang.
const STATEMENT_TIMEOUT: &str = "30s";

/// Why the database could not be reached or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("database \"{0}\" does not exist; run `booking-cli db reset` to create it")]
    MissingDatabase(String),
    #[error("the database has no booking tables; run `booking-cli db reset` first")]
    MissingSchema,
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Parses `DATABASE_URL` into connect options carrying the statement time-out. The error never
/// repeats the URL (it may hold a password).
pub fn connect_options(url: &str) -> Result<PgConnectOptions, InputError> {
    let options = PgConnectOptions::from_str(url).map_err(|e| InputError::BadUrl {
        variable: "DATABASE_URL",
        what: "PostgreSQL",
        reason: e.to_string(),
    })?;
    Ok(options
        .options([("statement_timeout", STATEMENT_TIMEOUT)])
        .application_name("booking-cli")
        // Statements are logged by this tool's own tracing; sqlx's per-statement and
        // slow-statement logs would interleave with the tables on stderr.
        .disable_statement_logging())
}

/// Opens one connection and closes it: a wrong host, a stopped server, bad credentials or a
/// missing database surface here, each with its own message.
pub async fn probe(options: &PgConnectOptions) -> Result<(), DbError> {
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_| DbError::Timeout(CONNECT_TIMEOUT))?
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000") => {
                DbError::MissingDatabase(options.get_database().unwrap_or("?").to_owned())
            }
            _ => DbError::Sqlx(e),
        })?;
    // Closing politely is best effort: the probe already proved what it had to.
    let _ = connection.close().await;
    Ok(())
}

/// A pool of at most `max_connections`, after a successful [`probe`]. Connections are opened
/// lazily; call [`warm_up`] to open them before a race starts.
pub async fn pool(options: PgConnectOptions, max_connections: u32) -> Result<PgPool, DbError> {
    probe(&options).await?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(CONNECT_TIMEOUT)
        // A ping before every checkout is a round trip on the hot path; a connection that died
        // fails its first statement instead, which the run reports as an error.
        .test_before_acquire(false)
        .connect_lazy_with(options))
}

/// A pool for the booking tables: probed, and checked that `db reset` has run.
pub async fn repo(options: PgConnectOptions, max_connections: u32) -> Result<Repo, DbError> {
    let repo = Repo::new(pool(options, max_connections).await?);
    if !repo.schema_ready().await? {
        return Err(DbError::MissingSchema);
    }
    Ok(repo)
}

/// Opens `n` connections at once and returns them to the pool idle, so that no user of a race
/// pays for a connection handshake after the start barrier.
pub async fn warm_up(pool: &PgPool, n: u32) -> Result<(), sqlx::Error> {
    let mut opening = JoinSet::new();
    for _ in 0..n {
        let pool = pool.clone();
        opening.spawn(async move { pool.acquire().await });
    }
    // Hold every connection until all are open: released early, one would be reused and the
    // pool would open fewer than `n`.
    let mut held = Vec::with_capacity(n as usize);
    while let Some(joined) = opening.join_next().await {
        match joined {
            Ok(connection) => held.push(connection?),
            Err(join) => return Err(sqlx::Error::Io(std::io::Error::other(join))),
        }
    }
    Ok(())
}

/// The hotel `db reset` seeds: rooms 1–10, every night from 2024-12-20 to 2025-01-05 with five
/// rooms of each type, except room 1 on 2024-12-25, which has one: the reference scenario.
pub fn reference_hotel() -> SeedPlan {
    let names = [
        "Standard Double",
        "Standard Twin",
        "Superior Double",
        "Superior Twin",
        "Deluxe King",
        "Deluxe Queen",
        "Family Room",
        "Junior Suite",
        "Executive Suite",
        "Penthouse",
    ];
    // Literal dates; `from_ymd_opt` returns None only for impossible ones.
    let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN);
    SeedPlan {
        room_names: names.iter().map(|n| (*n).to_owned()).collect(),
        first_night: date(2024, 12, 20),
        last_night: date(2025, 1, 5),
        total_inventory: 5,
        scarce: (
            RoomId::new(1).unwrap_or_else(|_| unreachable!("1 is a valid room id")),
            date(2024, 12, 25),
            1,
        ),
    }
}

/// What `db reset` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetReport {
    pub database: String,
    pub created_database: bool,
    pub migrations: usize,
    pub seed: SeedSummary,
}

/// `db reset`: creates the database if it is missing, drops the project's tables, applies the
/// migrations and seeds `plan`. Idempotent.
pub async fn reset(url: &str, plan: &SeedPlan) -> Result<ResetReport, DbError> {
    let options = connect_options(url)?;
    let database = options.get_database().unwrap_or("postgres").to_owned();
    let created_database = create_if_missing(url).await?;
    let repo = Repo::new(pool(options, 2).await?);
    let migrations = repo.recreate_schema().await?;
    let seed = repo.seed(plan).await?;
    repo.pool().close().await;
    Ok(ResetReport {
        database,
        created_database,
        migrations,
        seed,
    })
}

async fn create_if_missing(url: &str) -> Result<bool, DbError> {
    if within_timeout(Postgres::database_exists(url)).await? {
        return Ok(false);
    }
    within_timeout(Postgres::create_database(url)).await?;
    Ok(true)
}

async fn within_timeout<T>(
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, DbError> {
    Ok(tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| DbError::Timeout(CONNECT_TIMEOUT))??)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_larger_hotel_keeps_the_named_rooms_and_numbers_the_rest() {
        let plan = reference_hotel().with_rooms(12);
        assert_eq!(plan.room_names.len(), 12);
        assert_eq!(plan.room_names[0], "Standard Double");
        assert_eq!(plan.room_names[9], "Penthouse");
        assert_eq!(plan.room_names[10], "Room 11");
        assert_eq!(plan.room_names[11], "Room 12");
        assert_eq!(reference_hotel().with_rooms(3).room_names.len(), 3);
    }
}
