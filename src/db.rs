//! Connecting to PostgreSQL, and `db reset`.
//!
//! **Its own schema.** Everything booking-cli creates — its tables, its migration history, the
//! fencing state — lives in the schema [`SCHEMA`] (`booking_cli`). Every connection sets its
//! `search_path` to that schema alone, so an unqualified `bookings` can only ever mean
//! `booking_cli.bookings`: another application's `public.bookings` (or `public._sqlx_migrations`)
//! in the same database is never read, written or dropped. `db reset` drops and recreates that
//! schema and nothing else.
//!
//! **No hang.** Every way of reaching the server is bounded by a client-side deadline
//! (`--db-timeout`, [`DEFAULT_TIMEOUT`]): a probe connection before any pool is built (so a wrong
//! URL or a stopped server is one clear error, not a pool's generic time-out), the pool's
//! acquire time-out, and every statement (see [`crate::repo`]). A server-side
//! `statement_timeout` is set too, but it cannot fire when the server itself is stalled.

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

/// The schema that holds every object booking-cli creates (the repository's own).
pub use crate::repo::SCHEMA;

/// SQLSTATE `too_many_connections`: the server has no connection slot free.
pub const TOO_MANY_CLIENTS: &str = "53300";

/// The default client-side deadline of every PostgreSQL call (`--db-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the database could not be reached or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("database \"{0}\" does not exist; run `booking-cli db reset` to create it")]
    MissingDatabase(String),
    #[error("the database has no booking_cli schema; run `booking-cli db reset` first")]
    MissingSchema,
    /// `db reset` found objects of other schemas that depend on booking-cli's tables; it will
    /// not drop them.
    #[error(
        "objects outside the booking_cli schema depend on it, and booking-cli drops nothing of theirs — drop or change them first: {0}"
    )]
    Dependents(String),
    /// `db reset` or `db drop` found an extension someone else installed into booking_cli.
    #[error(
        "the booking_cli schema holds extension(s) booking-cli did not create: {0}; dropping the schema would remove them, so nothing was dropped — move them (ALTER EXTENSION … SET SCHEMA …) or drop them first"
    )]
    ForeignExtensions(String),
    #[error(
        "PostgreSQL has no connection slot free (too many clients); try again, or with fewer --users"
    )]
    NoSlots,
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Parses `DATABASE_URL` into connect options: `search_path` set to [`SCHEMA`] alone, and a
/// server-side statement time-out of `timeout`. The error never repeats the URL (it may hold a
/// password).
pub fn connect_options(url: &str, timeout: Duration) -> Result<PgConnectOptions, InputError> {
    // sqlx reads a URL of any scheme as PostgreSQL's; a MySQL URL would fail later, and as a
    // runtime error rather than the bad input it is.
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("postgres" | "postgresql")) {
        return Err(InputError::BadUrl {
            variable: "DATABASE_URL",
            what: "PostgreSQL",
            reason: match scheme {
                Some(scheme) => format!(
                    "booking-cli runs on PostgreSQL only: the URL must start with postgres://, not {scheme}://"
                ),
                None => "the URL must start with postgres://".to_owned(),
            },
        });
    }
    let options = PgConnectOptions::from_str(url).map_err(|e| InputError::BadUrl {
        variable: "DATABASE_URL",
        what: "PostgreSQL",
        reason: e.to_string(),
    })?;
    let statement_timeout = format!("{}ms", timeout.as_millis().max(1));
    Ok(options
        .options([
            ("search_path", SCHEMA),
            ("statement_timeout", statement_timeout.as_str()),
        ])
        .application_name("booking-cli")
        // Statements are logged by this tool's own tracing; sqlx's per-statement and
        // slow-statement logs would interleave with the tables on stderr.
        .disable_statement_logging())
}

/// Opens one connection and closes it: a wrong host, a stopped server, bad credentials or a
/// missing database surface here, each with its own message, within `timeout`.
pub async fn probe(options: &PgConnectOptions, timeout: Duration) -> Result<(), DbError> {
    // Whether the server answered, but with "too many clients": then that is what the
    // deadline ran out on, not a server that never answered.
    let refused = std::sync::atomic::AtomicBool::new(false);
    let connect = async {
        let mut pause = Duration::from_millis(20);
        loop {
            match options.connect().await {
                // A server out of connection slots may have one again in a moment (another
                // client leaving): wait for it, as the pool does, within the deadline.
                Err(sqlx::Error::Database(db))
                    if db.code().as_deref() == Some(TOO_MANY_CLIENTS) =>
                {
                    refused.store(true, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    };
    let connection = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| {
            if refused.load(std::sync::atomic::Ordering::Relaxed) {
                DbError::NoSlots
            } else {
                DbError::Timeout(timeout)
            }
        })?
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000") => {
                DbError::MissingDatabase(options.get_database().unwrap_or("?").to_owned())
            }
            _ => DbError::Sqlx(e),
        })?;
    // Closing politely is best effort: the probe already proved what it had to.
    let _ = tokio::time::timeout(timeout, connection.close()).await;
    Ok(())
}

/// A pool of at most `max_connections`, after a successful [`probe`]; waiting for a connection
/// (and opening one) is bounded by `timeout`. Connections are opened lazily; call [`warm_up`]
/// to open them before a race starts.
pub async fn pool(
    options: PgConnectOptions,
    max_connections: u32,
    timeout: Duration,
) -> Result<PgPool, DbError> {
    probe(&options, timeout).await?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(timeout)
        // A ping before every checkout is a round trip on the hot path; a connection that died
        // fails its first statement instead, which the run reports as an error.
        .test_before_acquire(false)
        .connect_lazy_with(options))
}

/// A pool for the booking tables: probed, and checked that `db reset` has run.
pub async fn repo(
    options: PgConnectOptions,
    max_connections: u32,
    timeout: Duration,
) -> Result<Repo, DbError> {
    let repo = Repo::new(pool(options, max_connections, timeout).await?, timeout);
    if !repo.schema_ready().await? {
        return Err(DbError::MissingSchema);
    }
    Ok(repo)
}

/// Opens `n` connections at once and returns them to the pool idle, so that no user of a race
/// pays for a connection handshake after the start barrier.
pub async fn warm_up(pool: &PgPool, n: u32) -> Result<(), sqlx::Error> {
    // Holding more than the pool's size would wait for itself until the acquire time-out.
    let n = n.min(pool.options().get_max_connections());
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
        shards: crate::repo::DEFAULT_SHARDS,
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

/// `db reset`: creates the database if it is missing, drops and recreates the [`SCHEMA`]
/// (nothing outside it), applies the migrations into it and seeds `plan`. Idempotent.
pub async fn reset(url: &str, plan: &SeedPlan, timeout: Duration) -> Result<ResetReport, DbError> {
    let options = connect_options(url, timeout)?;
    let database = options.get_database().unwrap_or("postgres").to_owned();
    let created_database = create_if_missing(url, timeout).await?;
    let repo = Repo::new(pool(options, 2, timeout).await?, timeout);
    drop_schema(&repo, true).await?;
    let migrations = repo.migrate().await?;
    let seed = repo.seed(plan).await?;
    repo.close().await;
    Ok(ResetReport {
        database,
        created_database,
        migrations,
        seed,
    })
}

/// Drops [`SCHEMA`] (and creates it again, empty, with `recreate`) — or, when anything outside
/// it depends on anything inside it, drops nothing and names them.
async fn drop_schema(repo: &Repo, recreate: bool) -> Result<(), DbError> {
    let extensions = repo.foreign_extensions().await?;
    if !extensions.is_empty() {
        return Err(DbError::ForeignExtensions(extensions.join(", ")));
    }
    let blockers = repo.drop_schema(recreate).await.map_err(|e| match &e {
        // dependent_objects_still_exist: PostgreSQL names them in the detail.
        sqlx::Error::Database(db) if db.code().as_deref() == Some("2BP01") => {
            let detail = db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.detail())
                .unwrap_or_default()
                .replace('\n', "; ");
            DbError::Dependents(format!("{}; {detail}", db.message()))
        }
        _ => DbError::Sqlx(e),
    })?;
    if blockers.is_empty() {
        return Ok(());
    }
    Err(DbError::Dependents(blockers.join("; ")))
}

/// What `db drop` removed from PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DropReport {
    pub database: String,
    /// Whether there was a [`SCHEMA`] to drop (a missing database has none).
    pub schema_dropped: bool,
}

/// `db drop`: drops [`SCHEMA`] and everything in it — unless anything outside it depends on
/// anything inside it — and nothing else: not the database, which may hold other schemas.
pub async fn drop(url: &str, timeout: Duration) -> Result<DropReport, DbError> {
    let options = connect_options(url, timeout)?;
    let database = options.get_database().unwrap_or("postgres").to_owned();
    if !within_timeout(timeout, Postgres::database_exists(url)).await? {
        return Ok(DropReport {
            database,
            schema_dropped: false,
        });
    }
    let repo = Repo::new(pool(options, 2, timeout).await?, timeout);
    let existed = repo.schema_exists().await?;
    if existed {
        drop_schema(&repo, false).await?;
    }
    repo.close().await;
    Ok(DropReport {
        database,
        schema_dropped: existed,
    })
}

async fn create_if_missing(url: &str, timeout: Duration) -> Result<bool, DbError> {
    if within_timeout(timeout, Postgres::database_exists(url)).await? {
        return Ok(false);
    }
    within_timeout(timeout, Postgres::create_database(url)).await?;
    Ok(true)
}

async fn within_timeout<T>(
    timeout: Duration,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, DbError> {
    Ok(tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| DbError::Timeout(timeout))??)
}

/// A repository on a pool of `wanted` connections — or of as many as PostgreSQL has slots for
/// right now, if other clients took some since the caller counted them: the users of a race
/// then take turns on fewer lanes instead of failing for want of a connection. The pool cannot
/// learn this by itself: its connect waits out a "too many clients" refusal until its
/// time-out. So the slots are counted by opening the connections directly, and the pool is
/// sized to the count. At least 2 are needed (one lane, one to read the final state).
pub async fn sized_repo(
    options: PgConnectOptions,
    wanted: u32,
    timeout: Duration,
) -> Result<Repo, DbError> {
    probe(&options, timeout).await?;
    let open = free_slots(&options, wanted, timeout).await?;
    if open < 2 {
        return Err(DbError::NoSlots);
    }
    if open < wanted {
        tracing::warn!(
            wanted,
            open,
            "PostgreSQL has slots for only {open} of {wanted} connections: users take turns on fewer lanes"
        );
    }
    let repo = Repo::new(pool(options, open, timeout).await?, timeout);
    if !repo.schema_ready().await? {
        return Err(DbError::MissingSchema);
    }
    Ok(repo)
}

/// How many of `wanted` connections the server accepts now (they are opened at once, then
/// closed). A refusal for lack of slots ends the count; any other failure is an error.
async fn free_slots(
    options: &PgConnectOptions,
    wanted: u32,
    timeout: Duration,
) -> Result<u32, DbError> {
    let mut opening = JoinSet::new();
    for _ in 0..wanted {
        let options = options.clone();
        opening.spawn(async move { tokio::time::timeout(timeout, options.connect()).await });
    }
    let mut open = Vec::with_capacity(wanted as usize);
    let mut failure = None;
    while let Some(joined) = opening.join_next().await {
        match joined {
            Ok(Ok(Ok(connection))) => open.push(connection),
            Ok(Ok(Err(sqlx::Error::Database(db))))
                if db.code().as_deref() == Some(TOO_MANY_CLIENTS) => {}
            Ok(Ok(Err(error))) => failure = Some(DbError::Sqlx(error)),
            Ok(Err(_)) => failure = Some(DbError::Timeout(timeout)),
            Err(join) => {
                failure = Some(DbError::Sqlx(sqlx::Error::Io(std::io::Error::other(join))))
            }
        }
    }
    let count = u32::try_from(open.len()).unwrap_or(u32::MAX);
    for connection in open {
        let _ = tokio::time::timeout(timeout, connection.close()).await;
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(count),
    }
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
