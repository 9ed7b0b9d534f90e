//! The edge: runs a parsed command, adds context to errors, and says which exit status the
//! outcome deserves. `main` only prints what comes back.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{BookArgs, Cli, Command, DbCommand, StressArgs};
use crate::config::{BookConfig, Connection, StressSettings};
use crate::db::{self, DbError};
use crate::domain::Outcome;
use crate::error::{BookingError, InputError};
use crate::lock::{ConnectError, RedisLock};
use crate::repo::Repo;
use crate::report;
use crate::strategy::{self, Mode, Strategy};
use crate::stress;

/// The documented exit statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `book`: created. `stress`: the expected outcome happened.
    Success = 0,
    /// A server unreachable, a query failed, …
    RuntimeError = 1,
    /// Bad input: nothing was written.
    BadInput = 2,
    /// `book`: 409 conflict. `stress`: the expectation did not hold.
    Unexpected = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

impl Exit {
    /// The status for an error: 2 when its chain holds an [`InputError`], else 1.
    pub fn for_error(error: &anyhow::Error) -> Self {
        if error.chain().any(|cause| cause.is::<InputError>()) {
            Exit::BadInput
        } else {
            Exit::RuntimeError
        }
    }
}

/// The error as one line: its context and causes joined by ": ", a cause left out when the
/// message before it already says it (sqlx and redis repeat their sources in their own
/// messages), line breaks folded, and every secret masked.
pub fn error_line(error: &anyhow::Error, secrets: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || parts.last().is_some_and(|last| last.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    crate::config::scrub(&parts.join(": "), secrets)
}

/// Runs one command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let connection = Connection::from_args(&cli.connection).map_err(anyhow::Error::new)?;
    match cli.command {
        Command::Db(DbCommand::Reset) => reset(&connection).await,
        Command::Book(args) => book(&connection, &args).await,
        Command::Stress(args) => stress(&connection, &args, cli.verbose).await,
    }
}

async fn reset(connection: &Connection) -> anyhow::Result<Exit> {
    let report = db::reset(&connection.database_url, &db::reference_hotel())
        .await
        .map_err(surface_db)
        .with_context(|| {
            format!(
                "failed to reset the database at DATABASE_URL {}",
                connection.database_display()
            )
        })?;
    let created = if report.created_database {
        "created database"
    } else {
        "reset database"
    };
    println!(
        "{created} {} at {}: applied {} migration(s), seeded {} rooms and {} inventory rows (room 1 has 1 room left on 2024-12-25)",
        report.database,
        connection.database_display(),
        report.migrations,
        report.seed.rooms,
        report.seed.inventory_rows,
    );
    Ok(Exit::Success)
}

async fn book(connection: &Connection, args: &BookArgs) -> anyhow::Result<Exit> {
    let config = BookConfig::from_args(args)?;
    let repo = connect_repo(connection, 2).await?;
    // Validate against the hotel before touching Redis or writing anything.
    repo.ensure_bookable(config.request.room, &config.request.stay)
        .await
        .map_err(surface_booking)?;
    let strategy = build_strategy(
        connection,
        config.mode,
        &repo,
        config.lock_policy,
        config.hold,
    )
    .await?;
    let outcome = strategy
        .book(&config.request)
        .await
        .map_err(surface_booking)
        .context("booking failed")?;
    let mut out = std::io::stdout().lock();
    if config.json {
        report::write_json(&mut out, &report::BookJson::new(&config, &outcome))?;
    } else {
        report::write_book(&mut out, &config, &outcome)?;
    }
    out.flush()?;
    Ok(match outcome {
        Outcome::Created { .. } => Exit::Success,
        Outcome::SoldOut { .. } | Outcome::LockNotAcquired { .. } => Exit::Unexpected,
    })
}

async fn stress(connection: &Connection, args: &StressArgs, verbose: u8) -> anyhow::Result<Exit> {
    let settings = StressSettings::from_args(args)?;
    let run = &settings.run;
    // One connection per user, so that no user waits for one, plus one for the final read —
    // but never more than the server has spare.
    let wanted = run.users.saturating_add(1);
    let probe = connect_repo(connection, 1).await?;
    let spare = probe
        .spare_connections()
        .await
        .context("failed to ask PostgreSQL how many connections it accepts")?;
    probe.pool().close().await;
    let size = wanted.min(spare.saturating_sub(2)).max(2);
    if size < wanted {
        tracing::warn!(
            wanted,
            size,
            "PostgreSQL accepts only {spare} more connections: {} users will wait for one",
            wanted - size
        );
    }
    let repo = connect_repo(connection, size).await?;
    let strategy = build_strategy(connection, run.mode, &repo, run.lock_policy, run.hold).await?;

    let progress = if settings.json || verbose > 0 || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(u64::from(run.users));
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {pos}/{len} users finished {wide_bar} {elapsed}",
        ) {
            bar.set_style(style);
        }
        bar
    };
    let report = stress::run(&repo, strategy, run, &progress)
        .await
        .map_err(surface_booking)
        .with_context(|| format!("stress run of --mode {} failed", run.mode))?;
    repo.pool().close().await;

    let mut out = std::io::stdout().lock();
    if settings.json {
        report::write_json(&mut out, &report::StressJson::new(&report))?;
    } else {
        report::write_stress(&mut out, &report)?;
    }
    out.flush()?;
    Ok(if report.expectation_met() {
        Exit::Success
    } else {
        Exit::Unexpected
    })
}

async fn connect_repo(connection: &Connection, max_connections: u32) -> anyhow::Result<Repo> {
    db::repo(connection.database.clone(), max_connections)
        .await
        .map_err(surface_db)
        .with_context(|| {
            format!(
                "failed to connect to DATABASE_URL {}",
                connection.database_display()
            )
        })
}

async fn build_strategy(
    connection: &Connection,
    mode: Mode,
    repo: &Repo,
    lock_policy: crate::lock::LockPolicy,
    hold: std::time::Duration,
) -> anyhow::Result<Arc<dyn Strategy>> {
    let lock = if mode.needs_redis() {
        let lock = RedisLock::connect(&connection.redis_url, &connection.lock_key_prefix)
            .await
            .map_err(|e| match e {
                ConnectError::Input(input) => anyhow::Error::new(input),
                ConnectError::Lock(lock) => anyhow::Error::new(lock),
            })
            .with_context(|| {
                format!(
                    "failed to connect to REDIS_URL {}",
                    connection.redis_display()
                )
            })?;
        Some(lock)
    } else {
        None
    };
    let context = strategy::Context {
        repo: repo.clone(),
        lock,
        lock_policy,
        hold,
    };
    Ok(strategy::build(mode, context)?)
}

/// Puts an [`InputError`] at the top of the chain (where [`Exit::for_error`] finds it) instead
/// of behind a transparent wrapper.
fn surface_booking(error: BookingError) -> anyhow::Error {
    match error {
        BookingError::Input(input) => anyhow::Error::new(input),
        other => anyhow::Error::new(other),
    }
}

fn surface_db(error: DbError) -> anyhow::Error {
    match error {
        DbError::Input(input) => anyhow::Error::new(input),
        other => anyhow::Error::new(other),
    }
}
