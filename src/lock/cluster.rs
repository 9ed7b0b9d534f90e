//! The lock on a Redis Cluster: connecting to it (at once for a run, on first use for `serve`),
//! and its nodes one by one — the failover lab's primary and replica, every node paused at once
//! (`--chaos pause-redis`), and the redirections every node answered during a run.
//!
//! The cluster client follows `MOVED` and `ASK` by itself and says nothing about it, so the
//! report counts them where they happen: each node keeps, per error prefix, how many error
//! replies it sent (`INFO errorstats`, Redis 6.2+: `errorstat_MOVED:count=3`). The difference
//! over a run, summed over the nodes, is what the cluster redirected — every client's, which on
//! a cluster of your own (the lab's) is this run's.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use serde::{Deserialize, Serialize};

use super::{Conn, ConnectError, LockError, REDIS_TIMEOUT, RedisLock};
use crate::error::InputError;

/// What the nodes answered instead of a result during a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirections {
    /// `MOVED`: the slot lives on another node (after a failover, or a stale slot map).
    pub moved: u64,
    /// `ASK`: the slot is migrating; ask the other node this once.
    pub ask: u64,
    /// `CLUSTERDOWN` and `TRYAGAIN`: the cluster could not serve the slot right then (a primary
    /// lost and not yet replaced); the client retried.
    pub unavailable: u64,
    /// Nodes that did not answer `INFO` before or after the run: the counts above miss theirs.
    pub nodes_unread: u64,
}

impl Redirections {
    pub fn merge(&mut self, other: &Self) {
        self.moved += other.moved;
        self.ask += other.ask;
        self.unavailable += other.unavailable;
        self.nodes_unread = self.nodes_unread.max(other.nodes_unread);
    }

    /// The counts of `errorstats` (one node's `INFO errorstats`).
    fn of_errorstats(info: &str) -> Self {
        let mut counts = Self::default();
        for line in info.lines() {
            let Some((name, rest)) = line
                .strip_prefix("errorstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let count = rest
                .strip_prefix("count=")
                .and_then(|c| c.trim().parse::<u64>().ok())
                .unwrap_or(0);
            match name {
                "MOVED" => counts.moved += count,
                "ASK" => counts.ask += count,
                "CLUSTERDOWN" | "TRYAGAIN" => counts.unavailable += count,
                _ => {}
            }
        }
        counts
    }
}

/// Every node's counts at one instant, by address: a node promoted or restarted between two
/// readings starts from zero, so differences are taken node by node and never go below zero.
#[derive(Debug, Clone, Default)]
pub struct Reading(Vec<(String, Option<Redirections>)>);

impl Reading {
    /// What happened between `self` (before) and `after`.
    pub fn since(&self, after: &Reading) -> Redirections {
        let mut total = Redirections::default();
        for (address, now) in &after.0 {
            let before = self
                .0
                .iter()
                .find(|(a, _)| a == address)
                .and_then(|(_, c)| *c);
            match (before, now) {
                (Some(b), Some(n)) => {
                    total.moved += n.moved.saturating_sub(b.moved);
                    total.ask += n.ask.saturating_sub(b.ask);
                    total.unavailable += n.unavailable.saturating_sub(b.unavailable);
                }
                _ => total.nodes_unread += 1,
            }
        }
        total
    }
}

/// One node of the cluster, reached directly (not through the cluster client, which would
/// route a command to whichever node serves its key).
pub struct Node {
    pub address: String,
    client: redis::Client,
}

impl Node {
    /// A client for the node at `address` (`ip:port`), with the seed URL's credentials and
    /// scheme.
    pub fn at(seed: &str, address: &str) -> Result<Self, LockError> {
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| LockError::Chaos(format!("CLUSTER NODES names node '{address}'")))?;
        let mut url = url::Url::parse(seed)
            .map_err(|e| LockError::Chaos(format!("the --redis-cluster seed is not a URL: {e}")))?;
        url.set_host(Some(host))
            .map_err(|e| LockError::Chaos(format!("node address '{address}': {e}")))?;
        let _ = url.set_port(Some(port));
        Ok(Self {
            address: address.to_owned(),
            client: redis::Client::open(url.as_str())?,
        })
    }

    /// A connection whose replies may take `timeout` (a node asked to sleep answers late).
    pub async fn connect(&self, timeout: Duration) -> Result<MultiplexedConnection, LockError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(timeout));
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// `INFO section`, within the command time-out.
    pub async fn info(&self, section: &str) -> Result<String, LockError> {
        let mut conn = self.connect(REDIS_TIMEOUT).await?;
        Ok(redis::cmd("INFO")
            .arg(section)
            .query_async(&mut conn)
            .await?)
    }
}

/// Every node's address (`ip:port`) in `CLUSTER NODES`, primaries and replicas.
pub fn addresses(nodes: &str) -> Vec<String> {
    nodes
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|a| a.split('@').next())
        .filter(|a| !a.is_empty() && !a.starts_with(':'))
        .map(str::to_owned)
        .collect()
}

impl RedisLock {
    /// Connects to a Redis Cluster through `seeds` (any of its nodes; the client learns the rest
    /// and which node serves which hash slot) and checks that it answers. The cluster client
    /// follows `MOVED` and `ASK` redirections, and when a node is lost it refreshes the slot map
    /// and retries, so a failover is picked up without a restart. The keys of one room share a
    /// hash slot (see [`room_night_key`](Self::room_night_key)), so a lock and its fencing
    /// counter stay in one slot for the scripts that touch both. Release notifications come
    /// from the first seed: a `PUBLISH` on any node reaches every node's subscribers.
    pub async fn connect_cluster(seeds: &[String], key_prefix: &str) -> Result<Self, ConnectError> {
        let (client, cluster) = cluster_clients(seeds)?;
        let conn = cluster
            .get_async_connection()
            .await
            .map_err(LockError::from)?;
        let mut lock = Self::over(client, Conn::Cluster(conn), key_prefix);
        lock.cluster_seeds = seeds.into();
        lock.ping().await?;
        Ok(lock)
    }

    /// A cluster handle that connects on first use and tries again while no node answers:
    /// `serve`, which must start whether or not the cluster is up yet, and pick it up when it
    /// comes. Fails only on a bad URL.
    pub fn connect_cluster_lazy(seeds: &[String], key_prefix: &str) -> Result<Self, ConnectError> {
        let (client, cluster) = cluster_clients(seeds)?;
        let lazy = Arc::new(LazyCluster {
            client: cluster,
            conn: tokio::sync::OnceCell::new(),
        });
        let mut lock = Self::over(client, Conn::LazyCluster(lazy), key_prefix);
        lock.cluster_seeds = seeds.into();
        Ok(lock)
    }
}

/// A cluster connection made when a command first needs it, and tried again by the next command
/// while no node answers. Once made, the cluster client keeps it: it follows redirections and
/// refreshes its slot map when a node is lost.
pub(super) struct LazyCluster {
    client: redis::cluster::ClusterClient,
    conn: tokio::sync::OnceCell<ClusterConnection>,
}

impl LazyCluster {
    pub(super) async fn get(&self) -> redis::RedisResult<ClusterConnection> {
        self.conn
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

/// A client for the first seed (release notifications, the failover lab) and the cluster client
/// over all of them; a URL that does not parse is bad input.
fn cluster_clients(
    seeds: &[String],
) -> Result<(redis::Client, redis::cluster::ClusterClient), ConnectError> {
    let first = seeds.first().ok_or_else(|| {
        ConnectError::Input(InputError::Invalid(
            "--redis-cluster needs at least one node URL".to_owned(),
        ))
    })?;
    let client = redis::Client::open(first.as_str()).map_err(bad_cluster_url)?;
    let cluster = redis::cluster::ClusterClient::builder(seeds.iter().map(String::as_str))
        .connection_timeout(REDIS_TIMEOUT)
        .response_timeout(REDIS_TIMEOUT)
        .retries(4)
        .build()
        .map_err(bad_cluster_url)?;
    Ok((client, cluster))
}

/// A `--redis-cluster` URL that does not parse: bad input.
fn bad_cluster_url(e: redis::RedisError) -> ConnectError {
    ConnectError::Input(InputError::BadUrl {
        variable: "REDIS_CLUSTER_URLS",
        what: "Redis Cluster node",
        reason: e.to_string(),
    })
}

impl RedisLock {
    /// `CLIENT PAUSE ms ALL` on every node of the cluster (`--chaos pause-redis`): a keyless
    /// command through the cluster client would reach one node, and the lock's slot might not
    /// be on it.
    pub(super) async fn pause_every_node(&self, ms: u64) -> Result<(), LockError> {
        for node in self.nodes().await? {
            let mut conn = node.connect(REDIS_TIMEOUT).await?;
            redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(ms)
                .arg("ALL")
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// Every node's error counts now; `None` off a cluster. A node that does not answer is
    /// recorded as unread, not as zero.
    pub async fn redirections(&self) -> Option<Reading> {
        if !self.is_cluster() {
            return None;
        }
        let mut reading = Vec::new();
        for node in self.nodes().await.ok()? {
            let counts = node.info("errorstats").await.ok();
            let counts = counts.map(|i| Redirections::of_errorstats(&i));
            reading.push((node.address, counts));
        }
        Some(Reading(reading))
    }

    /// Every node of the cluster, primaries and replicas, as `CLUSTER NODES` lists them now,
    /// each reached with the first seed's scheme and credentials.
    async fn nodes(&self) -> Result<Vec<Node>, LockError> {
        let seed = self
            .cluster_seeds
            .first()
            .ok_or_else(|| LockError::Chaos("not a Redis Cluster: no seeds".to_owned()))?;
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut self.conn.clone())
            .await?;
        addresses(&nodes)
            .iter()
            .map(|address| Node::at(seed, address))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errorstats_count_redirections_and_unavailability() {
        let info = "# Errorstats\r\nerrorstat_ERR:count=2\r\nerrorstat_MOVED:count=5\r\nerrorstat_ASK:count=1\r\nerrorstat_CLUSTERDOWN:count=3\r\nerrorstat_TRYAGAIN:count=1\r\n";
        assert_eq!(
            Redirections::of_errorstats(info),
            Redirections {
                moved: 5,
                ask: 1,
                unavailable: 4,
                nodes_unread: 0
            }
        );
    }

    #[test]
    fn a_difference_is_node_by_node_and_a_reset_node_counts_from_zero() {
        let counts = |moved| {
            Some(Redirections {
                moved,
                ..Redirections::default()
            })
        };
        let before = Reading(vec![
            ("a:1".to_owned(), counts(10)),
            ("b:2".to_owned(), counts(7)),
        ]);
        let after = Reading(vec![
            ("a:1".to_owned(), counts(13)),
            // b restarted: its counter went back to 2; c was not read before.
            ("b:2".to_owned(), counts(2)),
            ("c:3".to_owned(), counts(1)),
        ]);
        let since = before.since(&after);
        assert_eq!((since.moved, since.nodes_unread), (3, 1));
    }

    #[test]
    fn addresses_come_from_cluster_nodes_without_the_bus_port() {
        let nodes = "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                     d 127.0.0.1:7003@17003 slave a 0 0 1 connected\n";
        assert_eq!(addresses(nodes), ["127.0.0.1:7000", "127.0.0.1:7003"]);
    }
}
