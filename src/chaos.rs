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
use crate::lock::failover::Failover;
use crate::repo::Repo;

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

/// What has to happen before the users start: for `failover`, the replica cut off from its
/// primary, so that the first holder's lock never reaches it. An error here ends the run
/// before anyone books: a failover lab whose fault could not be set up would measure nothing.
pub async fn arm(
    plan: &[Chaos],
    redis: &[RedisLock],
    room: RoomId,
) -> Result<Vec<(Duration, Failover)>, crate::lock::LockError> {
    let mut armed = Vec::new();
    for chaos in plan.iter().filter(|c| c.fault == Fault::Failover) {
        let lock = redis.iter().find(|l| l.is_cluster()).ok_or_else(|| {
            crate::lock::LockError::Chaos(
                "--chaos failover needs a lock strategy on --redis-cluster".to_owned(),
            )
        })?;
        let failover = lock.failover_for(room, chaos.after).await?;
        failover.cut_replica().await?;
        armed.push((chaos.after, failover));
    }
    Ok(armed)
}

/// Fires every fault of `plan` at its time, counted from now (`armed`: the failovers [`arm`]
/// prepared). Failures to inject are logged: chaos that could not happen is worth a warning,
/// not the end of the run.
pub async fn inject(
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
