//! `--chaos FAULT@MS`: faults injected into a running `stress`, to watch each strategy fail
//! safe. Each fires once, `MS` milliseconds after the users were released.
//!
//! - `kill-backend`: `pg_terminate_backend` on one booking transaction that is open (idle in
//!   transaction: a user in its hold). Its user gets an error; PostgreSQL rolls the
//!   transaction back whole, so no row exists without its `booked_count` and vice versa.
//! - `pause-redis`: `CLIENT PAUSE 5000 ALL` — Redis answers nobody for 5 s, as if it had died.
//!   Every lock command runs into its 3 s time-out: lock strategies fail closed (no lock, no
//!   booking; the user counts as an error) and the run ends instead of hanging. It pauses every
//!   client of that Redis, not only this tool: use a Redis of your own.
//! - `failover` (`--redis-cluster` only): the primary of the slot the run's locks live in fails
//!   before its replica has the first holder's lock, and the replica is promoted without it
//!   (see [`crate::lock::failover`]). The replica is cut off before the users start; the
//!   primary freezes at MS. Uses `DEBUG`: a cluster of your own.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::domain::RoomId;
use crate::lock::RedisLock;
use crate::lock::cluster::Reading;
use crate::lock::failover::Failover;
use crate::repo::Repo;
use crate::strategy::StrategyStats;

/// How long `pause-redis` pauses the server: longer than the lock's command time-out.
pub const REDIS_PAUSE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Fault {
    KillBackend,
    PauseRedis,
    Failover,
}

/// A fault and when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chaos {
    pub fault: Fault,
    pub after: Duration,
}

impl FromStr for Chaos {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, ms) = s.split_once('@').ok_or_else(|| {
            format!("'{s}' is not FAULT@MS (e.g. kill-backend@100, pause-redis@100, failover@100)")
        })?;
        let fault = match name {
            "kill-backend" => Fault::KillBackend,
            "pause-redis" => Fault::PauseRedis,
            "failover" => Fault::Failover,
            other => {
                return Err(format!(
                    "unknown fault '{other}' (kill-backend, pause-redis, failover)"
                ));
            }
        };
        let ms: u64 = ms
            .parse()
            .map_err(|_| format!("'{ms}' is not a number of milliseconds"))?;
        Ok(Self {
            fault,
            after: Duration::from_millis(ms),
        })
    }
}

impl fmt::Display for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.fault {
            Fault::KillBackend => "kill-backend",
            Fault::PauseRedis => "pause-redis",
            Fault::Failover => "failover",
        };
        write!(f, "{name}@{}", self.after.as_millis())
    }
}

/// The faults of one run, armed and scheduled, and the cluster's error counts from before the
/// users started (to count the redirections the cluster client followed without saying).
pub struct Running {
    faults: tokio::task::JoinHandle<()>,
    cluster: Option<(RedisLock, Reading)>,
}

/// Arms `plan` (for `failover`, the replica cut off from its primary, so that the first holder's
/// lock never reaches it) and schedules its faults, counted from now: call it just before the
/// users are released. An error here ends the run before anyone books: a failover lab whose
/// fault could not be set up would measure nothing.
pub async fn start(
    plan: &[Chaos],
    repo: &Repo,
    redis: Vec<RedisLock>,
    room: RoomId,
) -> Result<Running, crate::lock::LockError> {
    let cluster_lock = redis.iter().find(|l| l.is_cluster());
    // Read before arming: the failover's margins count from the cut.
    let cluster = match cluster_lock {
        Some(lock) => lock
            .redirections()
            .await
            .map(|before| (lock.clone(), before)),
        None => None,
    };
    let mut armed = Vec::new();
    for chaos in plan.iter().filter(|c| c.fault == Fault::Failover) {
        // Validation made sure a failover comes with --redis-cluster; a strategy that does not
        // lock on it (naive, in --mode all) has no lock for the failover to lose.
        let Some(lock) = cluster_lock else {
            tracing::warn!("chaos: failover needs a strategy that locks on the cluster");
            continue;
        };
        let failover = lock.failover_for(room, chaos.after).await?;
        failover.cut_replica().await?;
        armed.push((chaos.after, failover));
    }
    let faults = tokio::spawn(inject(plan.to_vec(), repo.clone(), redis, armed));
    Ok(Running { faults, cluster })
}

impl Running {
    /// Ends the faults once the last user finished (a fault scheduled later has nothing left to
    /// break), and adds what the cluster redirected meanwhile to the lock's figures.
    pub async fn stop(self, stats: &mut StrategyStats) {
        self.faults.abort();
        let Some((lock, before)) = self.cluster else {
            return;
        };
        if let (Some(after), Some(figures)) = (lock.redirections().await, stats.lock.as_mut()) {
            figures.cluster = Some(before.since(&after));
        }
    }
}

/// Fires every fault of `plan` at its time, counted from now (`armed`: the failovers [`start`]
/// prepared). Failures to inject are logged: chaos that could not happen is worth a warning,
/// not the end of the run.
async fn inject(
    plan: Vec<Chaos>,
    repo: Repo,
    redis: Vec<RedisLock>,
    mut armed: Vec<(Duration, Failover)>,
) {
    let start = tokio::time::Instant::now();
    let mut plan = plan;
    plan.sort_by_key(|c| c.after);
    for chaos in plan {
        tokio::time::sleep_until(start + chaos.after).await;
        match chaos.fault {
            Fault::KillBackend => match repo.terminate_one_open_booking().await {
                Ok(Some(pid)) => tracing::warn!(
                    pid,
                    "chaos: terminated the backend of an open booking transaction"
                ),
                Ok(None) => tracing::warn!("chaos: no open booking transaction to terminate"),
                Err(error) => tracing::warn!(%error, "chaos: could not terminate a backend"),
            },
            Fault::Failover => {
                let at = armed.iter().position(|(after, _)| *after == chaos.after);
                let Some((after, failover)) = at.map(|i| armed.remove(i)) else {
                    continue;
                };
                let failed = async {
                    failover.fail_primary(after).await?;
                    failover.promote().await
                };
                if let Err(error) = failed.await {
                    tracing::warn!(%error, "chaos: the failover did not complete");
                }
            }
            Fault::PauseRedis => {
                if redis.is_empty() {
                    tracing::warn!("chaos: pause-redis needs a strategy that uses Redis");
                }
                // Every Redis the strategy uses: for Redlock, all its instances.
                for server in &redis {
                    match server.pause_server(REDIS_PAUSE).await {
                        Ok(()) => tracing::warn!(
                            pause_ms = REDIS_PAUSE.as_millis(),
                            "chaos: Redis paused"
                        ),
                        Err(error) => tracing::warn!(%error, "chaos: could not pause Redis"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_with_their_delay() {
        let c: Chaos = "kill-backend@150".parse().unwrap();
        assert_eq!(
            (c.fault, c.after),
            (Fault::KillBackend, Duration::from_millis(150))
        );
        assert_eq!(c.to_string(), "kill-backend@150");
        assert!("pause-redis".parse::<Chaos>().is_err());
        assert!("explode@10".parse::<Chaos>().is_err());
    }
}
