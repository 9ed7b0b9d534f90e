//! `--chaos failover@MS` on a Redis Cluster: the lock's primary fails before its replica has the
//! lock, and the replica is promoted without it.
//!
//! Redis replication is asynchronous: `SET NX` is acknowledged by the primary before any replica
//! has it. A primary that dies in that window takes the lock with it, and the promoted replica
//! lets a second client take the same lock — two holders. The window is short and depends on
//! timing, so the fault makes it certain instead of waiting for it:
//!
//! 1. **before the users start** ([`Failover::cut_replica`]), the replica of the lock's slot
//!    drops its link to the primary and sleeps (`CLIENT KILL TYPE master` and `DEBUG SLEEP`,
//!    sent in one write so that the replica cannot reconnect in between): whatever the primary
//!    now accepts — the first holder's lock, its fencing token — never reaches it;
//! 2. **at MS** ([`Failover::fail_primary`]) the primary freezes (`DEBUG SLEEP`), as a primary
//!    that died or was cut off would look to its clients;
//! 3. **the replica wakes and is promoted** ([`Failover::promote`]: `CLUSTER FAILOVER
//!    TAKEOVER`, which needs no agreement from the frozen primary). It owns the slot now, and
//!    has no lock in it. When the old primary wakes, it sees the newer configuration, becomes
//!    the new primary's replica and resynchronises from it: the first holder's key is gone
//!    everywhere, while the first holder is still inside its slow work.
//!
//! It needs `DEBUG`, which Redis 7 disables unless `enable-debug-command` allows it
//! (`scripts/cluster.sh` starts its nodes with `local`): a lab for a cluster of your own, never a
//! shared one.

use std::time::Duration;

use redis::Value;

use super::cluster::Node;
use super::{LockError, RedisLock};
use crate::domain::RoomId;

/// How long the replica stays asleep after the primary froze: time for the freeze to take hold
/// before the promotion.
const AFTER_FREEZE: Duration = Duration::from_millis(500);
/// How long the primary stays frozen after the replica was promoted.
const FROZEN_AFTER_PROMOTION: Duration = Duration::from_secs(1);

/// The two nodes of the slot a room's locks live in.
pub struct Failover {
    primary: Node,
    replica: Node,
    /// How long the replica sleeps, counted from the cut: until after the primary froze.
    replica_sleep: Duration,
}

impl Node {
    /// Sends `DEBUG SLEEP seconds` (after `first`, in the same write) and returns once the node
    /// is asleep: a node that answers at once refused the command.
    async fn sleep(&self, first: Option<redis::Cmd>, sleep: Duration) -> Result<(), LockError> {
        let mut conn = self.connect(sleep + super::REDIS_TIMEOUT).await?;
        let mut pipe = redis::pipe();
        if let Some(first) = first {
            pipe.add_command(first).ignore();
        }
        pipe.cmd("DEBUG").arg("SLEEP").arg(sleep.as_secs_f64());
        let asleep = tokio::spawn(async move { pipe.query_async::<Value>(&mut conn).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        if asleep.is_finished() {
            return match asleep.await {
                Ok(Err(error)) => Err(LockError::Chaos(format!(
                    "node {} did not sleep ({error}); the failover lab needs DEBUG, which `enable-debug-command local` allows (scripts/cluster.sh starts its nodes so)",
                    self.address
                ))),
                _ => Err(LockError::Chaos(format!(
                    "node {} answered DEBUG SLEEP at once",
                    self.address
                ))),
            };
        }
        Ok(())
    }
}

impl RedisLock {
    /// Finds the primary that serves `room`'s locks and its replica, and waits until the
    /// replica is in sync (a run right after an earlier failover may find it resynchronising).
    pub async fn failover_for(&self, room: RoomId, after: Duration) -> Result<Failover, LockError> {
        let seed =
            self.cluster_seeds.first().cloned().ok_or_else(|| {
                LockError::Chaos("--chaos failover needs --redis-cluster".to_owned())
            })?;
        let key = self.room_night_key(room, chrono::NaiveDate::MIN);
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query_async(&mut self.conn.clone())
            .await?;
        for _ in 0..100 {
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut self.conn.clone())
                .await?;
            if let Some((primary, replica)) = shard_of(&nodes, slot) {
                let primary = Node::at(&seed, &primary)?;
                let replica = Node::at(&seed, &replica)?;
                if in_sync(&replica).await {
                    return Ok(Failover {
                        primary,
                        replica,
                        replica_sleep: after + AFTER_FREEZE,
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LockError::Chaos(format!(
            "no healthy primary with an in-sync replica serves slot {slot} (room {room}) after 10 s"
        )))
    }
}

impl Failover {
    /// Step 1, before the users start: the replica drops its link and sleeps.
    pub async fn cut_replica(&self) -> Result<(), LockError> {
        let mut kill = redis::cmd("CLIENT");
        kill.arg("KILL").arg("TYPE").arg("master");
        self.replica.sleep(Some(kill), self.replica_sleep).await?;
        tracing::warn!(replica = %self.replica.address, primary = %self.primary.address, sleep_ms = self.replica_sleep.as_millis(), "chaos: failover: the replica cut its link to the primary and sleeps");
        Ok(())
    }

    /// Step 2, at MS: the primary freezes until after the promotion.
    pub async fn fail_primary(&self, after: Duration) -> Result<(), LockError> {
        let frozen = AFTER_FREEZE + FROZEN_AFTER_PROMOTION;
        self.primary.sleep(None, frozen).await?;
        tracing::warn!(primary = %self.primary.address, after_ms = after.as_millis(), frozen_ms = frozen.as_millis(), "chaos: failover: the primary froze");
        Ok(())
    }

    /// Step 3: the replica, once awake, takes the slots over without the primary's agreement.
    pub async fn promote(&self) -> Result<(), LockError> {
        let mut conn = self
            .replica
            .connect(self.replica_sleep + super::REDIS_TIMEOUT)
            .await?;
        redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .arg("TAKEOVER")
            .query_async::<()>(&mut conn)
            .await?;
        tracing::warn!(new_primary = %self.replica.address, "chaos: failover: the replica took over, without the primary's last writes");
        Ok(())
    }
}

/// The primary serving `slot` and one of its replicas, as `ip:port`, from `CLUSTER NODES`.
fn shard_of(nodes: &str, slot: u16) -> Option<(String, String)> {
    let lines: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 8)
        .collect();
    let serves = |fields: &[&str]| {
        fields[8..].iter().any(|range| {
            let mut bounds = range.splitn(2, '-').map(str::parse::<u16>);
            match (bounds.next(), bounds.next()) {
                (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
                (Some(Ok(a)), None) => a == slot,
                _ => false,
            }
        })
    };
    let healthy = |flags: &str| !flags.contains("fail") && !flags.contains("handshake");
    let primary = lines
        .iter()
        .find(|f| f[2].contains("master") && healthy(f[2]) && serves(f))?;
    let replica = lines
        .iter()
        .find(|f| f[2].contains("slave") && healthy(f[2]) && f[3] == primary[0])?;
    let address = |f: &[&str]| f[1].split('@').next().unwrap_or_default().to_owned();
    Some((address(primary), address(replica)))
}

/// Whether the replica's link to its primary is up.
async fn in_sync(replica: &Node) -> bool {
    replica
        .info("replication")
        .await
        .is_ok_and(|i| i.contains("master_link_status:up"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_of_a_slot_is_its_primary_and_a_replica() {
        let nodes = "\
a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383
d 127.0.0.1:7003@17003 slave a 0 0 1 connected
e 127.0.0.1:7004@17004 slave b 0 0 2 connected
f 127.0.0.1:7005@17005 slave c 0 0 3 connected
";
        assert_eq!(
            shard_of(nodes, 10963),
            Some(("127.0.0.1:7002".to_owned(), "127.0.0.1:7005".to_owned()))
        );
        assert_eq!(
            shard_of(nodes, 0),
            Some(("127.0.0.1:7000".to_owned(), "127.0.0.1:7003".to_owned()))
        );
        let failed = nodes.replace("slave c", "slave,fail c");
        assert_eq!(shard_of(&failed, 10963), None);
    }
}
