//! `stress --processes N`: the same race, split over N operating-system processes of this tool.
//!
//! The parent prepares the slot, starts N workers (this binary with the hidden
//! `--worker-first-user`), and waits until each has connected, opened its pool and parked its
//! users at its barrier — each prints `ready`. Then it writes `go` to every worker at once, so the
//! users of all processes start together. Each worker prints its share of the results as one
//! JSON line and exits; the parent merges them and judges the run from the database, as always.
//!
//! Connection URLs reach the workers through their environment, never their command line,
//! where `ps` would show a password.
//!
//! **No hang:** while its users run, a worker prints `alive` every [`HEARTBEAT`]. A worker that
//! stays silent for [`SILENCE`] (stopped, swapped out, wedged) is killed; its users count as
//! errors, the rest of the run is judged from the database as usual, and the run ends with
//! exit status 1 rather than waiting for it forever.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::config::Connection;
use crate::domain::{BookingRequest, RoomId, Stay, UserId};
use crate::metrics::Latencies;
use crate::run::{ProcessRow, RaceResult, StressConfig, Tally, TargetStats};
use crate::strategy::StrategyStats;

/// How long a worker may take to connect and get ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a racing worker says it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// How long a racing worker may stay silent before it is taken for hung and killed: many
/// heartbeats, so that a busy machine is not mistaken for a hung worker.
pub const SILENCE: Duration = Duration::from_secs(10);

/// The line a racing worker prints every [`HEARTBEAT`].
pub const ALIVE: &str = "alive";

/// Why the workers could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("could not start worker process: {0}")]
    Spawn(std::io::Error),
    #[error("worker process {process} failed: {reason}")]
    Failed { process: u32, reason: String },
}

/// A worker's share of the results, as sent to the parent.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Users by outcome and errors by message, as the parent tallies them.
    tally: Tally,
    /// (microseconds, count) pairs of the latency histogram.
    latencies_us: Vec<(u64, u64)>,
    /// The same, per outcome.
    #[serde(default)]
    latencies_by_outcome_us: BTreeMap<String, Vec<(u64, u64)>>,
    /// (room, from, to) of each refused user.
    refused: Vec<(i32, NaiveDate, NaiveDate)>,
    /// What the strategy counted, whole (so that no counter can be forgotten on the way).
    #[serde(default)]
    strategy: StrategyStats,
    elapsed_us: u64,
}

impl WorkerReport {
    pub fn from_race(race: &RaceResult) -> Self {
        Self {
            tally: race.tally.clone(),
            latencies_us: race.latency.to_pairs(),
            latencies_by_outcome_us: race
                .latency_by_outcome
                .iter()
                .map(|(outcome, latency)| (outcome.clone(), latency.to_pairs()))
                .collect(),
            refused: race
                .refused
                .iter()
                .map(|r| (r.room.get(), r.stay.from(), r.stay.to()))
                .collect(),
            strategy: race.stats.strategy.clone(),
            elapsed_us: u64::try_from(race.elapsed.as_micros()).unwrap_or(u64::MAX),
        }
    }

    fn into_race(self) -> RaceResult {
        RaceResult {
            tally: self.tally,
            latency: Latencies::from_pairs(&self.latencies_us),
            latency_by_outcome: self
                .latencies_by_outcome_us
                .iter()
                .map(|(outcome, pairs)| (outcome.clone(), Latencies::from_pairs(pairs)))
                .collect(),
            refused: self
                .refused
                .into_iter()
                .filter_map(|(room, from, to)| {
                    Some(BookingRequest {
                        user: UserId::random(),
                        room: RoomId::new(room).ok()?,
                        stay: Stay::between(from, to).ok()?,
                    })
                })
                .collect(),
            stats: TargetStats {
                strategy: self.strategy,
                remote: None,
            },
            elapsed: Duration::from_micros(self.elapsed_us),
            // Workers record no phases: --timeline and --trace draw one process's race.
            tracks: Vec::new(),
        }
    }
}

/// The users of process `i` of `n`: (first user, how many). Shares differ by at most one.
pub fn share(users: u32, n: u32, i: u32) -> (u32, u32) {
    let base = users / n;
    let extra = users % n;
    let first = i * base + i.min(extra);
    (first, base + u32::from(i < extra))
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    users: u32,
}

/// What the workers of a run reported, merged.
#[derive(Debug, Default)]
pub struct Workers {
    pub race: RaceResult,
    /// Each process's own figures.
    pub rows: Vec<ProcessRow>,
    /// Workers that stopped answering and were killed, each said in a sentence.
    pub lost: Vec<String>,
}

/// Starts the workers of `config`, releases them together, and merges what they report.
pub async fn run_workers(
    connection: &Connection,
    config: &StressConfig,
    verbose: u8,
    threads: Option<u16>,
) -> Result<Workers, WorkerError> {
    let exe = std::env::current_exe().map_err(WorkerError::Spawn)?;
    let mut workers = Vec::with_capacity(config.processes as usize);
    for i in 0..config.processes {
        let (first, users) = share(config.users, config.processes, i);
        let mut command = Command::new(&exe);
        command
            .args(worker_args(config.mode, first, verbose, threads))
            .env(WORKER_PLAN, worker_plan(config, users)?)
            .env(
                "BOOKING_DB_TIMEOUT",
                format!("{}ms", connection.db_timeout.as_millis()),
            )
            .env("DATABASE_URL", &connection.database_url)
            .env("REDIS_URL", connection.redis_urls.join(","))
            .env("LOCK_KEY_PREFIX", &connection.lock_key_prefix)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // If the parent gives up (an error, Ctrl-C), no worker outlives it.
            .kill_on_drop(true);
        if !connection.redis_cluster.is_empty() {
            command.env("REDIS_CLUSTER_URLS", connection.redis_cluster.join(","));
        }
        let mut child = command.spawn().map_err(WorkerError::Spawn)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(WorkerError::Spawn(std::io::Error::other(
                "no pipes to the worker",
            )));
        };
        workers.push(Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            users,
        });
    }

    for (i, worker) in workers.iter_mut().enumerate() {
        let line = tokio::time::timeout(READY_TIMEOUT, read_line(&mut worker.stdout))
            .await
            .map_err(|_| failed(i, format!("not ready within {READY_TIMEOUT:?}")))?
            .map_err(|e| failed(i, e))?;
        if line.trim() != "ready" {
            return Err(failed(
                i,
                format!("expected 'ready', got '{}'", line.trim()),
            ));
        }
    }
    // All users of all processes are parked at their barriers: release them together.
    for (i, worker) in workers.iter_mut().enumerate() {
        worker
            .stdin
            .write_all(b"go\n")
            .await
            .map_err(|e| failed(i, format!("could not send go: {e}")))?;
        worker
            .stdin
            .flush()
            .await
            .map_err(|e| failed(i, e.to_string()))?;
    }
    let started = Instant::now();

    // Every worker is listened to at once, so that a silent one is noticed while the others
    // are still running.
    let mut listening = tokio::task::JoinSet::new();
    for (i, worker) in workers.into_iter().enumerate() {
        listening.spawn(async move { (i, collect(i, worker).await) });
    }
    let mut collected = Vec::with_capacity(config.processes as usize);
    while let Some(joined) = listening.join_next().await {
        let (i, result) = joined.map_err(|e| failed(0, e.to_string()))?;
        collected.push((i, result?));
    }
    collected.sort_by_key(|(i, _)| *i);

    let mut merged = Workers::default();
    for (i, (users, race, lost)) in collected {
        if let Some(lost) = lost {
            merged.lost.push(lost);
        }
        merged.rows.push(ProcessRow {
            process: i as u32 + 1,
            users,
            tally: race.tally.clone(),
            created: race.tally.count("created"),
            conflicts_sold_out: race.tally.count("sold_out"),
            conflicts_lock: race.tally.lock_refusals(),
            conflicts_retries: race.tally.count("retries_exhausted"),
            errors: race.tally.error_count(),
            elapsed_ms: race.elapsed.as_millis(),
        });
        merged.race.merge(race);
    }
    merged.race.elapsed = started.elapsed();
    Ok(merged)
}

/// Reads one racing worker until its report: (its users, its results, and a sentence when it
/// stopped answering and was killed — its users then count as errors).
async fn collect(
    i: usize,
    mut worker: Worker,
) -> Result<(u32, RaceResult, Option<String>), WorkerError> {
    let line = loop {
        match tokio::time::timeout(SILENCE, read_line(&mut worker.stdout)).await {
            Ok(Ok(line)) if line.trim() == ALIVE => continue,
            Ok(Ok(line)) => break line,
            Ok(Err(reason)) => return Err(failed(i, reason)),
            Err(_) => {
                // SIGKILL ends a stopped process too; its connections close, and PostgreSQL
                // rolls back whatever it had open.
                let _ = worker.child.start_kill();
                let _ = tokio::time::timeout(SILENCE, worker.child.wait()).await;
                let lost = format!(
                    "worker process {} stopped answering for {}s and was killed; its {} user(s) count as errors",
                    i + 1,
                    SILENCE.as_secs(),
                    worker.users
                );
                let mut race = RaceResult::default();
                race.tally.errors.insert(
                    format!("worker process {} stopped answering", i + 1),
                    worker.users,
                );
                return Ok((worker.users, race, Some(lost)));
            }
        }
    };
    let status = tokio::time::timeout(SILENCE, worker.child.wait())
        .await
        .map_err(|_| failed(i, "did not exit after its report"))?
        .map_err(|e| failed(i, e.to_string()))?;
    if !status.success() {
        return Err(failed(i, format!("exited with {status}")));
    }
    let report: WorkerReport =
        serde_json::from_str(&line).map_err(|e| failed(i, format!("unreadable report: {e}")))?;
    Ok((worker.users, report.into_race(), None))
}

fn failed(i: usize, reason: impl Into<String>) -> WorkerError {
    WorkerError::Failed {
        process: i as u32 + 1,
        reason: reason.into(),
    }
}

async fn read_line(stdout: &mut BufReader<ChildStdout>) -> Result<String, String> {
    let mut line = String::new();
    match stdout.read_line(&mut line).await {
        Ok(0) => Err("exited before answering (see its error above)".to_owned()),
        Ok(_) => Ok(line),
        Err(e) => Err(e.to_string()),
    }
}

/// The environment variable a worker reads its plan from: the whole [`StressConfig`] of its
/// share of the users, as JSON — one value, so that no setting can be lost on the way, as one
/// re-spelled flag after another could be. (The servers' URLs, which may hold passwords, go in
/// their own variables, as for any run; nothing secret is on a command line.)
pub const WORKER_PLAN: &str = "BOOKING_CLI_WORKER_PLAN";

/// Worker `first`'s plan: `config`, with its share of `users`.
fn worker_plan(config: &StressConfig, users: u32) -> Result<String, WorkerError> {
    let share = StressConfig {
        users,
        ..config.clone()
    };
    serde_json::to_string(&share).map_err(|e| WorkerError::Spawn(std::io::Error::other(e)))
}

/// The plan a worker was handed, from [`WORKER_PLAN`].
pub fn read_worker_plan() -> Result<StressConfig, String> {
    let text = std::env::var(WORKER_PLAN)
        .map_err(|_| format!("a worker needs its plan in {WORKER_PLAN}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{WORKER_PLAN} is not a plan: {e}"))
}

/// The command line of one worker: which users are its, and how it logs; the plan is in its
/// environment (`--mode` is there for the parser, which requires it, and for `ps`).
fn worker_args(
    mode: crate::strategy::Mode,
    first: u32,
    verbose: u8,
    threads: Option<u16>,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "stress".into(),
        "--mode".into(),
        mode.name().into(),
        "--worker-first-user".into(),
        first.to_string(),
    ];
    if verbose > 0 {
        args.push(format!("-{}", "v".repeat(verbose as usize)));
    }
    if let Some(threads) = threads {
        args.extend(["--threads".into(), threads.to_string()]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_get_the_runtime_threads_and_never_a_url() {
        let mode = crate::strategy::Mode::Locked;
        let args = worker_args(mode, 0, 0, Some(1));
        let at = args.iter().position(|a| a == "--threads");
        assert_eq!(
            at.and_then(|i| args.get(i + 1)).map(String::as_str),
            Some("1")
        );
        assert!(!worker_args(mode, 0, 0, None).contains(&"--threads".to_owned()));
        assert!(args.iter().all(|a| !a.contains("://")), "{args:?}");
    }

    /// Every setting reaches the worker, the ones a re-spelled flag list once lost included
    /// (`--fail-rate`, `--fail-seed`): the plan goes over whole.
    #[test]
    fn a_worker_gets_the_whole_plan_with_its_share_of_the_users() {
        let mut config = crate::run::StressConfig::reference(crate::strategy::Mode::Reserve);
        config.payments = crate::strategy::Payments {
            fail_rate: 0.25,
            seed: 42,
            hold_ttl: std::time::Duration::from_millis(1_500),
        };
        config.lock_policy.wait = Some(std::time::Duration::from_millis(750));
        config.processes = 3;
        let text = worker_plan(&config, 7).unwrap();
        let back: StressConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back.users, 7);
        assert_eq!(back.payments, config.payments);
        assert_eq!(back.lock_policy, config.lock_policy);
        assert_eq!(back.stay, config.stay);
        assert_eq!(back.mode, config.mode);
        assert_eq!(back.retry, config.retry);
        assert_eq!(back.hold, config.hold);
    }

    #[test]
    fn shares_cover_every_user_once() {
        for (users, n) in [(20, 3), (20, 2), (5, 5), (7, 1)] {
            let shares: Vec<_> = (0..n).map(|i| share(users, n, i)).collect();
            assert_eq!(shares.iter().map(|s| s.1).sum::<u32>(), users);
            for pair in shares.windows(2) {
                assert_eq!(pair[0].0 + pair[0].1, pair[1].0, "{shares:?}");
            }
        }
    }
}
