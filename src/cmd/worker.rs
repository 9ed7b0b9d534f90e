//! The worker side of `stress --processes N`: one process's share of the users.

use std::io::Write;

use indicatif::ProgressBar;

use anyhow::Context as _;

use crate::config::Connection;
use crate::exit::Exit;
use crate::processes;
use crate::run::{self, Burst, StressConfig};
use crate::strategy;
use crate::targets::StrategyTarget;

use super::{connect_lock, connect_redlock, connect_sized_repo, stop_on_ctrl_c};

/// One worker process of `--processes`: connect, park the users at the barrier, say `ready`,
/// start on the parent's `go`, and report the share as one JSON line.
pub async fn run(
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
            tuning: run.tuning(),
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
    let target = StrategyTarget::new(strategy, run, lanes);
    let burst = Burst {
        users: run.users,
        first_user,
        record: false,
    };
    let race = run::race(
        std::sync::Arc::new(target),
        burst,
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
