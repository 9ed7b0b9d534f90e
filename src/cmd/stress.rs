//! `stress`: many users, one slot, released together; the verdict read from the database.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use anyhow::Context as _;

use crate::cli::{StressArgs, StressMode};
use crate::config::Connection;
use crate::config::StressSettings;
use crate::error::InputError;
use crate::exit::{Exit, surface_booking};
use crate::lock::RedisLock;
use crate::processes;
use crate::repo::Repo;
use crate::report;
use crate::run::{self, StressConfig, StressReport};
use crate::stop::Stop;
use crate::strategy;
use crate::sync::delivery::Wire;
use crate::sync::{Sync, settle_single_packet};
use crate::targets::serve::{CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use crate::targets::{ServeTarget, StrategyTarget};

use super::{
    check_writable, connect_lock, connect_redlock, connect_sized_repo, finish_output,
    redis_servers, stop_on_ctrl_c,
};

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

pub async fn run(
    connection: &Connection,
    args: &StressArgs,
    verbose: u8,
    threads: Option<u16>,
) -> anyhow::Result<Exit> {
    if let Some(first_user) = args.worker_first_user {
        // A worker of --processes: its whole plan came from the parent.
        let plan = crate::processes::read_worker_plan().map_err(InputError::Invalid)?;
        return super::worker::run(connection, &plan, first_user).await;
    }
    let settings = StressSettings::from_args(args)?;
    let failover = settings
        .runs
        .iter()
        .any(|r| r.injects(crate::chaos::Fault::Failover));
    if failover && connection.redis_cluster.is_empty() {
        return Err(InputError::Invalid(
            "--chaos failover fails the primary of a Redis Cluster: it needs --redis-cluster (or REDIS_CLUSTER_URLS)".to_owned(),
        )
        .into());
    }
    // An output that cannot be written is said before the slot is prepared.
    check_writable("--trace", args.trace.as_deref())?;
    check_writable("--junit", args.junit.as_deref())?;
    check_writable("--report", args.report.as_deref())?;
    let Some(first) = settings.runs.first() else {
        return Ok(Exit::Success);
    };
    if !settings.targets.is_empty() {
        let reports = over_http(connection, &settings).await?;
        return finish(&settings, args, &reports, &Stop::new());
    }
    // One connection per user, so that no user waits for one, plus one for the final read —
    // but never more than the server has spare.
    let spare = super::spare_connections(connection).await?;
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
                    tuning: run.tuning(),
                    stop: stop.clone(),
                },
            )?;
            let progress = progress_bar(run, settings.json || verbose > 0);
            let target = StrategyTarget::on_pool(strategy, run, &repo);
            run::run_with_chaos(
                &repo,
                Arc::new(target),
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
    finish(&settings, args, &reports, &stop)
}

/// `--target`: the same runs, each user a `POST /api/bookings` to the servers. This process
/// only prepares the slot and reads the verdict from the database; the servers book.
async fn over_http(
    connection: &Connection,
    settings: &StressSettings,
) -> anyhow::Result<Vec<StressReport>> {
    let wire = burst_wire(settings).await?;
    let repo = connect_sized_repo(connection, 2).await?;
    let stop = stop_on_ctrl_c(true);
    let mut reports = Vec::with_capacity(settings.runs.len());
    for run in &settings.runs {
        if stop.is_stopped() {
            break;
        }
        // Before anything is written: the servers must read the database this run writes.
        let target = ServeTarget::connect(
            &settings.targets,
            run,
            &repo,
            settings.tls.as_ref(),
            wire.clone(),
        )
        .await
        .map_err(surface_booking)?;
        let progress = progress_bar(run, settings.json);
        let report =
            run::run_with_chaos(&repo, Arc::new(target), Vec::new(), run, &stop, &progress)
                .await
                .map_err(surface_booking)
                .with_context(|| format!("stress run of --mode {} over HTTP failed", run.mode))?;
        reports.push(report);
    }
    repo.close().await;
    Ok(reports)
}

/// How a burst over `--target` goes out (`--sync`): `None` for today's barrier and keep-alive
/// client (`--sync none`, and the closed loop of `--duration`). Single-packet needs every server
/// to speak HTTP/2: asked for by name, one that does not is bad input; under `auto` the burst
/// falls back to last-byte and says so.
async fn burst_wire(settings: &StressSettings) -> anyhow::Result<Option<Arc<Wire>>> {
    let duration = settings.runs.first().and_then(|r| r.duration);
    if settings.sync == Sync::None || duration.is_some() {
        return Ok(None);
    }
    let mut sync = settings.sync;
    if sync != Sync::LastByte {
        for target in &settings.targets {
            let tls = settings.tls.as_ref().map(|t| &t.h2);
            let (settled, note) =
                settle_single_packet(&target.origin, tls, CONNECT_TIMEOUT, settings.sync)
                    .await
                    .map_err(crate::sync::SettleError::surface)
                    .with_context(|| {
                        format!("--target {}", crate::config::mask_url(&target.base))
                    })?;
            if let Some(note) = note {
                eprintln!("{note}");
            }
            if settled == Sync::LastByte {
                sync = Sync::LastByte;
                break;
            }
            sync = settled;
        }
    }
    Ok(Some(Arc::new(Wire {
        sync,
        tls: settings.tls.clone(),
        timeout: REQUEST_TIMEOUT,
    })))
}

/// Prints the reports and chooses the exit status.
fn finish(
    settings: &StressSettings,
    args: &StressArgs,
    reports: &[StressReport],
    stop: &Stop,
) -> anyhow::Result<Exit> {
    let mut out = std::io::stdout().lock();
    let printed = if args.markdown {
        report::markdown::write_stress(&mut out, reports)
    } else if settings.repeat > 1 {
        // The runs of one strategy are consecutive: one group each.
        let groups: Vec<&[StressReport]> = reports.chunks(settings.repeat as usize).collect();
        match (settings.json, groups.as_slice()) {
            (true, [one]) if args.mode != StressMode::All => {
                report::write_json(&mut out, &report::json::RepeatJson::new(one))
            }
            (true, all) => report::write_json(
                &mut out,
                &all.iter()
                    .map(|g| report::json::RepeatJson::new(g))
                    .collect::<Vec<_>>(),
            ),
            (false, all) => report::text::compare::write_repeated(&mut out, all),
        }
    } else {
        match (settings.json, reports) {
            (true, [one]) if args.mode != StressMode::All => {
                report::write_json(&mut out, &report::json::StressJson::new(one))
            }
            (true, all) => report::write_json(
                &mut out,
                &all.iter()
                    .map(report::json::StressJson::new)
                    .collect::<Vec<_>>(),
            ),
            (false, [one]) if args.mode != StressMode::All => {
                report::text::stress::write_stress(&mut out, one)
            }
            (false, all) => report::text::compare::write_comparison(&mut out, all),
        }
    };
    let printed = printed.and_then(|()| {
        if !args.timeline || settings.json {
            return Ok(());
        }
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        for r in reports {
            writeln!(out)?;
            if reports.len() > 1 {
                writeln!(out, "{}", r.config.mode)?;
            }
            report::timeline::write_timeline(&mut out, &r.tracks, r.config.inventory, colour)?;
        }
        Ok(())
    });
    finish_output(printed.and_then(|()| out.flush()))?;
    if let Some(path) = &args.trace {
        let runs: Vec<(String, &[crate::timeline::Track])> = reports
            .iter()
            .map(|r| (r.config.mode.to_string(), r.tracks.as_slice()))
            .collect();
        write_file(path, |file| {
            serde_json::to_writer(file, &report::timeline::trace(&runs))
                .map_err(std::io::Error::from)
        })
        .with_context(|| format!("failed to write --trace {}", path.display()))?;
    }
    if let Some(path) = &args.junit {
        write_file(path, |file| {
            report::junit::write_stress(file, reports, settings.repeat)
        })
        .with_context(|| format!("failed to write --junit {}", path.display()))?;
    }
    if let Some(path) = &args.report {
        write_file(path, |file| report::html::write_html(file, reports))
            .with_context(|| format!("failed to write --report {}", path.display()))?;
    }
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
    } else if crate::run::runs_met(reports, settings.repeat)
        .iter()
        .all(|met| *met)
    {
        Exit::Success
    } else {
        Exit::Unexpected
    })
}

/// Writes a file whole: into a buffer, then created and flushed.
fn write_file(
    path: &std::path::Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    write(&mut file)?;
    file.flush()
}

/// `--processes N`: prepare here, race in N workers, judge here.
async fn run_processes(
    connection: &Connection,
    repo: &Repo,
    redis: Vec<RedisLock>,
    run: &StressConfig,
    (verbose, threads): (u8, Option<u16>),
) -> anyhow::Result<StressReport> {
    let cleared = run::prepare(repo, run).await.map_err(surface_booking)?;
    // With several processes, fault times count from when the workers are started.
    let faults = crate::chaos::start(&run.chaos, repo, redis, run.room)
        .await
        .map_err(|e| surface_booking(e.into()))?;
    let workers = processes::run_workers(connection, run, verbose, threads).await;
    let mut workers = match workers {
        Ok(workers) => workers,
        Err(error) => {
            faults.stop(&mut Default::default()).await;
            return Err(error.into());
        }
    };
    faults.stop(&mut workers.race.stats.strategy).await;
    let mut report = run::judge(repo, run, workers.race, cleared)
        .await
        .map_err(surface_booking)?;
    report.processes = workers.rows;
    report.lost_workers = workers.lost;
    Ok(report)
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
