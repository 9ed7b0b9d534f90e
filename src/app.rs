//! The edge: runs a parsed command, adds context to errors, and says which exit status the
//! outcome deserves. `main` only prints what comes back.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{
    BenchCommand, BenchLockArgs, BookArgs, Cli, Command, DbCommand, StressArgs, StressMode,
};
use crate::config::{BookConfig, Connection, StressSettings};
use crate::db::{self, DbError};
use crate::domain::Outcome;
use crate::error::{BookingError, InputError};
use crate::lock::redlock::RedLock;
use crate::lock::{ConnectError, RedisLock};
use crate::processes;
use crate::repo::Repo;
use crate::report;
use crate::stop::Stop;
use crate::strategy;
use crate::stress::{self, StressConfig, StressReport};

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
    /// `stress` was interrupted (Ctrl-C): a partial report was printed. 128 + SIGINT.
    Interrupted = 130,
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
        Command::Db(DbCommand::Reset(args)) => reset(&connection, args.rooms).await,
        Command::Book(args) => book(&connection, &args).await,
        Command::Stress(args) => stress(&connection, &args, cli.verbose, cli.threads).await,
        Command::Bench(BenchCommand::Lock(args)) => bench_lock(&connection, &args).await,
    }
}

async fn reset(connection: &Connection, rooms: u32) -> anyhow::Result<Exit> {
    let plan = db::reference_hotel().with_rooms(rooms);
    let report = db::reset(&connection.database_url, &plan, connection.db_timeout)
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

/// Connections for a one-process stress run (one of them is kept for reading the final state;
/// each other one is a lane users book on).
///
/// When every user can have a connection, each gets one: a demonstration races all its users
/// at one instant. When they cannot, users take turns anyway, and then more lanes only make
/// bookings queue inside PostgreSQL: on the 2-core development machine, 1,000 slots booked by
/// 3,000 users ran at 3,432 bookings/s on 93 lanes and 5,007/s on 32 (one hot slot: 415/s and
/// 531/s).
fn pool_size(users: u32, asked: Option<u32>, spare: u32) -> u32 {
    const TURN_TAKING_CONNECTIONS: u32 = 33;
    let available = spare.saturating_sub(2).max(2);
    let wanted = users.saturating_add(1);
    let size = match asked {
        Some(asked) => asked.min(available),
        None if wanted <= available => wanted,
        None => TURN_TAKING_CONNECTIONS.min(available),
    };
    if size < wanted {
        tracing::info!(
            users,
            connections = size,
            spare,
            "users take turns on {} lanes",
            size - 1
        );
    }
    size
}

async fn bench_lock(connection: &Connection, args: &BenchLockArgs) -> anyhow::Result<Exit> {
    let lock = connect_redis(connection).await?;
    let measured = crate::bench::lock_pairs(&lock, args.concurrency, args.duration)
        .await
        .context("the lock benchmark failed")?;
    let mut out = std::io::stdout().lock();
    finish_output(report::write_json(&mut out, &measured).and_then(|()| out.flush()))?;
    Ok(Exit::Success)
}

async fn book(connection: &Connection, args: &BookArgs) -> anyhow::Result<Exit> {
    let config = BookConfig::from_args(args)?;
    let repo = connect_repo(connection, 2).await?;
    // Validate against the hotel before touching Redis or writing anything.
    repo.ensure_bookable(config.request.room, &config.request.stay)
        .await
        .map_err(surface_booking)?;
    let lock = connect_lock(connection, config.mode.needs_redis()).await?;
    let strategy = strategy::build(
        config.mode,
        strategy::Context {
            repo: repo.clone(),
            lock,
            redlock: connect_redlock(connection, config.mode.needs_redlock()).await?,
            lock_policy: config.lock_policy,
            retry: config.retry,
            hold: config.hold,
            stop: Stop::new(),
        },
    )?;
    let outcome = strategy
        .book(&config.request)
        .await
        .map_err(surface_booking)
        .context("booking failed")?;
    let mut out = std::io::stdout().lock();
    let printed = if config.json {
        report::write_json(&mut out, &report::BookJson::new(&config, &outcome))
    } else {
        report::write_book(&mut out, &config, &outcome)
    };
    finish_output(printed.and_then(|()| out.flush()))?;
    Ok(match outcome {
        Outcome::Created { .. } => Exit::Success,
        Outcome::SoldOut { .. }
        | Outcome::LockNotAcquired { .. }
        | Outcome::RetriesExhausted { .. }
        | Outcome::FencedOut { .. }
        | Outcome::LockExpired { .. } => Exit::Unexpected,
        Outcome::Interrupted => Exit::Interrupted,
    })
}

async fn stress(
    connection: &Connection,
    args: &StressArgs,
    verbose: u8,
    threads: Option<u16>,
) -> anyhow::Result<Exit> {
    let settings = StressSettings::from_args(args)?;
    let Some(first) = settings.runs.first() else {
        return Ok(Exit::Success);
    };
    if let Some(first_user) = args.worker_first_user {
        return worker(connection, first, first_user).await;
    }
    // One connection per user, so that no user waits for one, plus one for the final read —
    // but never more than the server has spare.
    let probe = connect_repo(connection, 1).await?;
    let spare = probe
        .spare_connections()
        .await
        .context("failed to ask PostgreSQL how many connections it accepts")?;
    probe.close().await;
    let size = if first.processes > 1 {
        // Each worker opens one connection per user plus one; the parent needs two.
        let needed = first.users + first.processes + 2;
        if needed > spare {
            return Err(InputError::Invalid(format!(
                "--users {} over --processes {} needs {needed} connections, but PostgreSQL accepts only {spare} more (max_connections)",
                first.users, first.processes
            ))
            .into());
        }
        2
    } else {
        pool_size(first.users, args.connections, spare)
    };
    let repo = connect_sized_repo(connection, size).await?;
    // Connect to Redis before anything is written, so that a dead Redis writes nothing.
    let lock = connect_lock(
        connection,
        settings.runs.iter().any(|r| r.mode.needs_redis()),
    )
    .await?;
    let redlock = connect_redlock(
        connection,
        settings.runs.iter().any(|r| r.mode.needs_redlock()),
    )
    .await?;

    let stop = stop_on_ctrl_c(true);
    let mut reports = Vec::with_capacity(settings.runs.len());
    for run in &settings.runs {
        if stop.is_stopped() {
            break;
        }
        let report = if run.processes > 1 {
            run_processes(
                connection,
                &repo,
                redis_servers(&lock, &redlock),
                run,
                (verbose, threads),
            )
            .await
        } else {
            let strategy = strategy::build(
                run.mode,
                strategy::Context {
                    repo: repo.clone(),
                    lock: lock.as_ref().map(RedisLock::with_fresh_stats),
                    redlock: redlock.clone(),
                    lock_policy: run.lock_policy,
                    retry: run.retry,
                    hold: run.hold,
                    stop: stop.clone(),
                },
            )?;
            let progress = progress_bar(run, settings.json || verbose > 0);
            stress::run_with_chaos(
                &repo,
                strategy,
                redis_servers(&lock, &redlock),
                run,
                &stop,
                &progress,
            )
            .await
            .map_err(surface_booking)
        }
        .with_context(|| format!("stress run of --mode {} failed", run.mode))?;
        reports.push(report);
    }
    repo.close().await;

    let mut out = std::io::stdout().lock();
    let printed = match (settings.json, reports.as_slice()) {
        (true, [one]) if args.mode != StressMode::All => {
            report::write_json(&mut out, &report::StressJson::new(one))
        }
        (true, all) => report::write_json(
            &mut out,
            &all.iter().map(report::StressJson::new).collect::<Vec<_>>(),
        ),
        (false, [one]) if args.mode != StressMode::All => report::write_stress(&mut out, one),
        (false, all) => report::write_comparison(&mut out, all),
    };
    finish_output(printed.and_then(|()| out.flush()))?;
    // A worker that stopped answering is an error of the run, whatever the verdict says.
    let lost: Vec<&String> = reports.iter().flat_map(|r| &r.lost_workers).collect();
    if !lost.is_empty() {
        for sentence in lost {
            eprintln!("error: {sentence}");
        }
        return Ok(Exit::RuntimeError);
    }
    Ok(if stop.is_stopped() {
        Exit::Interrupted
    } else if reports.iter().all(StressReport::expectation_met) {
        Exit::Success
    } else {
        Exit::Unexpected
    })
}

/// `--processes N`: prepare here, race in N workers, judge here.
async fn run_processes(
    connection: &Connection,
    repo: &Repo,
    redis: Vec<RedisLock>,
    run: &StressConfig,
    (verbose, threads): (u8, Option<u16>),
) -> anyhow::Result<StressReport> {
    let cleared = stress::prepare(repo, run).await.map_err(surface_booking)?;
    // With several processes, fault times count from when the workers are started.
    let faults = tokio::spawn(crate::chaos::inject(run.chaos.clone(), repo.clone(), redis));
    let workers = processes::run_workers(connection, run, verbose, threads).await;
    faults.abort();
    let workers = workers?;
    let mut report = stress::judge(repo, run, workers.race, cleared)
        .await
        .map_err(surface_booking)?;
    report.processes = workers.rows;
    report.lost_workers = workers.lost;
    Ok(report)
}

/// One worker process of `--processes`: connect, park the users at the barrier, say `ready`,
/// start on the parent's `go`, and report the share as one JSON line.
async fn worker(
    connection: &Connection,
    run: &StressConfig,
    first_user: u32,
) -> anyhow::Result<Exit> {
    let repo = connect_sized_repo(connection, run.users.saturating_add(1)).await?;
    let lock = connect_lock(connection, run.mode.needs_redis()).await?;
    // Ctrl-C reaches the workers too (one process group): each stops its own users.
    let stop = stop_on_ctrl_c(false);
    let strategy = strategy::build(
        run.mode,
        strategy::Context {
            repo: repo.clone(),
            lock,
            redlock: connect_redlock(connection, run.mode.needs_redlock()).await?,
            lock_policy: run.lock_policy,
            retry: run.retry,
            hold: run.hold,
            stop: stop.clone(),
        },
    )?;
    crate::db::warm_up(repo.pool(), run.users)
        .await
        .context("failed to open the worker's connections")?;
    let mut out = std::io::stdout();
    writeln!(out, "ready")?;
    out.flush()?;
    // The parent takes a worker that stays silent for long for hung (processes::SILENCE).
    let heartbeat = tokio::spawn(async {
        loop {
            tokio::time::sleep(processes::HEARTBEAT).await;
            // One synchronous write per line: aborting this task can never cut a line.
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{}", processes::ALIVE)
                .and_then(|()| out.flush())
                .is_err()
            {
                return;
            }
        }
    });
    let go = async {
        // Any line — or the parent closing the pipe — starts the race; a parent that died has
        // already killed this worker (kill_on_drop).
        let mut line = String::new();
        let _ = tokio::io::AsyncBufReadExt::read_line(
            &mut tokio::io::BufReader::new(tokio::io::stdin()),
            &mut line,
        )
        .await;
    };
    // One lane per pooled connection: fewer than users when PostgreSQL was short of slots.
    let lanes = repo.pool().options().get_max_connections();
    let race = stress::race(
        strategy,
        run,
        first_user,
        lanes,
        go,
        &stop,
        &ProgressBar::hidden(),
    )
    .await;
    heartbeat.abort();
    let _ = heartbeat.await;
    repo.close().await;
    serde_json::to_writer(&mut out, &processes::WorkerReport::from_race(&race))?;
    writeln!(out)?;
    out.flush()?;
    Ok(Exit::Success)
}

/// A stop signal that the first Ctrl-C sets: no new bookings start, waiters give up, bookings
/// in flight finish and release their locks, and a partial report follows. A second Ctrl-C
/// quits at once.
fn stop_on_ctrl_c(announce: bool) -> Stop {
    let stop = Stop::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        if announce {
            eprintln!(
                "interrupted: no new bookings start; finishing those in flight (Ctrl-C again to quit now)"
            );
        }
        signal.stop();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(Exit::Interrupted as i32);
        }
    });
    stop
}

/// A reader that stops early (`| head`) closes the pipe: that is not an error of this tool, and
/// the exit status still reports the outcome.
fn finish_output(written: std::io::Result<()>) -> anyhow::Result<()> {
    match written {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other.context("failed to write to stdout")?),
    }
}

/// A bar on stderr when a person is watching; hidden for JSON, logs, or no terminal.
fn progress_bar(run: &StressConfig, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    if run.duration.is_some() {
        let bar = ProgressBar::new_spinner();
        let template = format!(
            "{{spinner}} {:<12} {{pos}} bookings {{elapsed}}",
            run.mode.name()
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        return bar;
    }
    let bar = ProgressBar::new(u64::from(run.users));
    let template = format!(
        "{{spinner}} {:<12} {{pos}}/{{len}} users finished {{wide_bar}} {{elapsed}}",
        run.mode.name()
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

async fn connect_repo(connection: &Connection, max_connections: u32) -> anyhow::Result<Repo> {
    let options = connection.database.clone();
    connected(
        connection,
        db::repo(options, max_connections, connection.db_timeout),
    )
    .await
}

/// Like [`connect_repo`], with a pool of `wanted` connections or of as many as PostgreSQL has
/// slots for (see [`db::sized_repo`]).
async fn connect_sized_repo(connection: &Connection, wanted: u32) -> anyhow::Result<Repo> {
    let options = connection.database.clone();
    connected(
        connection,
        db::sized_repo(options, wanted, connection.db_timeout),
    )
    .await
}

/// A repository, or the error saying which server (password masked) could not be reached.
async fn connected(
    connection: &Connection,
    repo: impl Future<Output = Result<Repo, DbError>>,
) -> anyhow::Result<Repo> {
    repo.await.map_err(surface_db).with_context(|| {
        format!(
            "failed to connect to DATABASE_URL {}",
            connection.database_display()
        )
    })
}

/// The lock service, when `needed`.
async fn connect_lock(connection: &Connection, needed: bool) -> anyhow::Result<Option<RedisLock>> {
    if !needed {
        return Ok(None);
    }
    connect_redis(connection).await.map(Some)
}

/// The lock service at the first `REDIS_URL`.
async fn connect_redis(connection: &Connection) -> anyhow::Result<RedisLock> {
    RedisLock::connect(&connection.redis_url, &connection.lock_key_prefix)
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
        })
}

/// Every Redis server the run's lock strategies use: the faults of `--chaos pause-redis`.
fn redis_servers(lock: &Option<RedisLock>, redlock: &Option<RedLock>) -> Vec<RedisLock> {
    lock.iter()
        .cloned()
        .chain(redlock.iter().flat_map(RedLock::instances))
        .collect()
}

/// The Redlock instances, when `needed`. Instances that do not answer are tolerated here (a
/// minority may be down); without a majority, every booking fails closed.
async fn connect_redlock(connection: &Connection, needed: bool) -> anyhow::Result<Option<RedLock>> {
    if !needed {
        return Ok(None);
    }
    let redlock = RedLock::connect(&connection.redis_urls, &connection.lock_key_prefix)
        .await
        .with_context(|| {
            format!(
                "failed to set up Redlock over REDIS_URL {}",
                connection.redis_urls_display()
            )
        })?;
    Ok(Some(redlock))
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

#[cfg(test)]
mod tests {
    use super::pool_size;

    #[test]
    fn every_user_gets_a_connection_when_they_fit_and_lanes_are_capped_when_not() {
        assert_eq!(
            pool_size(20, None, 97),
            21,
            "a demonstration: one per user, plus one"
        );
        assert_eq!(
            pool_size(1_000, None, 97),
            33,
            "turn-taking: a pool sized to the work"
        );
        assert_eq!(
            pool_size(1_000, None, 12),
            10,
            "never more than PostgreSQL accepts"
        );
        assert_eq!(pool_size(1_000, Some(9), 97), 9, "--connections wins");
        assert_eq!(
            pool_size(20, Some(500), 97),
            95,
            "…within what PostgreSQL accepts"
        );
    }
}
