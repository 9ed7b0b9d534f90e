//! The locks on a Redis Cluster: a cluster of the test's own (3 primaries, 3 replicas, private
//! ports), started and stopped by `scripts/cluster.sh` as a user runs it, and the reference run
//! over it — judged from the database.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Cli, ServeProcess, json, text};

/// A cluster on six ports of its own, taken down (every node stopped, its directory removed)
/// when dropped, also when the test fails.
struct Cluster {
    base: u16,
    dir: PathBuf,
    urls: String,
}

impl Cluster {
    fn up() -> Self {
        let cluster = Self::on_free_ports();
        cluster.start();
        cluster
    }

    /// A cluster's ports and directory, nothing started yet.
    fn on_free_ports() -> Self {
        let base = free_run();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cluster-{}", uuid::Uuid::new_v4().simple()));
        Self {
            base,
            dir,
            urls: (base..base + 6)
                .map(|p| format!("redis://127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    fn start(&self) {
        let out = self.script("up");
        assert!(out.status.success(), "cluster up: {}", text(&out.stderr));
    }

    fn script(&self, action: &str) -> std::process::Output {
        Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh"))
            .arg(action)
            .env("CLUSTER_PORT", self.base.to_string())
            .env("CLUSTER_DIR", &self.dir)
            .output()
            .expect("scripts/cluster.sh runs")
    }

    /// `GET key` through any node, following redirections (`redis-cli -c`).
    fn get(&self, key: &str) -> String {
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &self.base.to_string(), "GET", key])
            .output()
            .expect("redis-cli runs");
        text(&out.stdout).trim().to_owned()
    }

    /// `stress --users 20 ARGS --redis-cluster … --json`: a run of 20 users locking on this cluster.
    fn stress(&self, cli: &Cli, args: &[&str]) -> std::process::Output {
        let mut all = vec!["stress", "--users", "20"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--redis-cluster", &self.urls, "--json"]);
        cli.run(&all)
    }

    /// Whether any node still answers on its port.
    fn anything_listening(&self) -> bool {
        (self.base..self.base + 6).any(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.script("down");
    }
}

/// Six consecutive free ports whose cluster-bus ports (+10000) are free too, all below Linux's
/// ephemeral range (32768–60999): an outgoing connection could take a bus port there between
/// this check and the node's start.
fn free_run() -> u16 {
    for _ in 0..200 {
        let base = 10_000 + rand::random::<u16>() % 12_700;
        let free = (base..base + 6)
            .flat_map(|p| [p, p + 10_000])
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no run of six free ports");
}

/// From a cluster brought up by the script: `locked` and `fenced` give the reference result
/// over it (1 × 201, 19 refusals, 0 errors, booked_count = 1, read from PostgreSQL), their
/// keys land in one slot per room (the hash tag), and the cluster goes down leaving nothing.
#[test]
fn the_reference_run_over_a_cluster_sells_the_last_room_once() {
    let cluster = Cluster::up();
    let cli = Cli::new();
    cli.reset();
    let mut fenced_locks = 0;
    for mode in ["locked", "fenced"] {
        let out = cluster.stress(&cli, &["--mode", mode]);
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", text(&out.stderr));
        let body = json(&out);
        let refused: u64 = [
            "conflicts_sold_out",
            "conflicts_lock",
            "conflicts_retries",
            "conflicts_fenced",
        ]
        .iter()
        .map(|k| body[k].as_u64().unwrap_or(0))
        .sum();
        assert_eq!(
            (&body["created"], refused, &body["errors"], &body["verdict"]),
            (
                &serde_json::json!(1),
                19,
                &serde_json::json!(0),
                &serde_json::json!("SAFE")
            ),
            "{mode}: {body}"
        );
        assert_eq!(cli.reference_slot(), (1, 1, 1), "{mode}: from the database");
        fenced_locks = body["lock"]["locks_acquired"].as_u64().unwrap_or(0);
    }
    // The fence counter of room 1's night is on the cluster (in the slot of {room:1}): one
    // token drawn per lock `fenced` took.
    let counter = format!("{}fence:{{room:1}}:2024-12-25", cli.prefix);
    assert_eq!(cluster.get(&counter), fenced_locks.to_string());
    assert!(fenced_locks >= 1);
    let down = cluster.script("down");
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(
        !cluster.anything_listening(),
        "a node outlived cluster down"
    );
    assert!(!cluster.dir.exists());
}

/// `book` room 1's night of 2024-12-25 with `mode`, locking on the cluster at `urls`.
fn book(cli: &Cli, mode: &str, urls: &str) -> std::process::Output {
    cli.run(&[
        "book",
        "--user",
        common::USER,
        "--room",
        "1",
        "--from",
        "2024-12-25",
        "--mode",
        mode,
        "--redis-cluster",
        urls,
    ])
}

/// A bad `--redis-cluster` URL is one line naming the variable, exit 2, nothing written.
#[test]
fn a_bad_cluster_url_is_refused() {
    let cli = Cli::new();
    cli.reset();
    let before = cli.snapshot();
    let out = book(&cli, "locked", "nonsense://x");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("REDIS_CLUSTER_URLS"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(cli.snapshot(), before);
}

/// The failover lab's run, as docs/faults.md shows it: 20 users, the first holder inside a 4 s
/// hold on a lock that would last 20 s, the lock's primary failed 100 ms in (its replica cut off
/// before the users started, so it never has the lock), waiters patient for 10 s.
fn failover_run(cli: &Cli, cluster: &Cluster, mode: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--mode",
        mode,
        "--hold-ms",
        "4000",
        "--lock-ttl-ms",
        "20000",
        "--lock-wait-ms",
        "10000",
        "--chaos",
        "failover@100",
    ];
    args.extend_from_slice(extra);
    let out = cluster.stress(cli, &args);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{mode}: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("the replica took over"),
        "{mode}: the failover did not happen: {}",
        text(&out.stderr)
    );
    json(&out)
}

/// `locked` trusts the lease alone: the promoted replica never had the first holder's key, a
/// second user takes the lock while the first is still working, and the night is sold twice —
/// in PostgreSQL, not only in the tool's counts. The cluster's nodes answered at least one MOVED
/// (the client's slot map changed under it) and the report counts it.
#[test]
fn a_failover_lets_a_second_holder_in_and_locked_overbooks() {
    let cluster = Cluster::up();
    let cli = Cli::new();
    cli.reset();
    let body = failover_run(&cli, &cluster, "locked", &[]);
    assert_eq!(body["verdict"], "OVERBOOKED", "{body}");
    let (_, booked, rows) = cli.reference_slot();
    assert!(
        booked >= 2 && rows >= 2,
        "from the database: {booked} booked, {rows} rows"
    );
    assert!(
        body["lock"]["locks_expired_before_release"].as_u64() >= Some(1),
        "{body}"
    );
    assert!(
        body["lock"]["cluster"]["moved"].as_u64() >= Some(1),
        "{body}"
    );
}

/// `fenced` over the same failover: the second holder's token is newer, PostgreSQL takes its
/// write and refuses the first holder's, and the night is sold once.
#[test]
fn a_failover_cannot_overbook_fenced() {
    let cluster = Cluster::up();
    let cli = Cli::new();
    cli.reset();
    let body = failover_run(&cli, &cluster, "fenced", &[]);
    assert_eq!(
        (&body["verdict"], &body["created"]),
        (&serde_json::json!("SAFE"), &serde_json::json!(1)),
        "{body}"
    );
    assert_eq!(cli.reference_slot(), (1, 1, 1), "from the database");
    assert!(body["conflicts_fenced"].as_u64() >= Some(1), "{body}");
}

/// `--lock-replicas 1`: a lock counts only once a replica acknowledged it (`WAIT`). With the
/// replica cut off, the first holder's lock is given back instead of held, so nobody works on a
/// lock the failover can lose: refusals, never two holders.
#[test]
fn with_a_replicas_acknowledgement_a_failover_cannot_overbook_locked() {
    let cluster = Cluster::up();
    let cli = Cli::new();
    cli.reset();
    let body = failover_run(&cli, &cluster, "locked", &["--lock-replicas", "1"]);
    assert_eq!(
        (&body["verdict"], &body["created"]),
        (&serde_json::json!("SAFE"), &serde_json::json!(1)),
        "{body}"
    );
    assert_eq!(cli.reference_slot(), (1, 1, 1), "from the database");
    assert!(
        body["lock"]["locks_unreplicated"].as_u64() >= Some(1),
        "{body}"
    );
}

/// A failover needs a cluster to fail: without `--redis-cluster` it is refused as input (exit 2,
/// naming the flag) before anything is written.
#[test]
fn a_failover_without_a_cluster_is_refused() {
    let cli = Cli::new();
    cli.reset();
    let before = cli.snapshot();
    let out = cli.run(&["stress", "--mode", "locked", "--chaos", "failover@100"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--redis-cluster"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(cli.snapshot(), before);
}

/// `book` and `serve` lock on the cluster too: a fenced booking draws its token from the
/// cluster's counter, and `serve --redis-cluster` raced by 20 users over HTTP sells the last
/// room once — the counter on the cluster moving once per lock the server took.
#[test]
fn book_and_serve_lock_on_the_cluster() {
    let cluster = Cluster::up();
    let cli = Cli::new();
    cli.reset();
    let counter = format!("{}fence:{{room:1}}:2024-12-25", cli.prefix);
    let token = || cluster.get(&counter).parse::<u64>().unwrap_or(0);
    let out = book(&cli, "fenced", &cluster.urls);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(cli.reference_slot(), (1, 1, 1), "from the database");
    assert_eq!(token(), 1, "book drew its token from the cluster");

    let server = ServeProcess::start(
        &cli,
        &["--mode", "fenced", "--redis-cluster", &cluster.urls],
    );
    let raced = cli.run(&[
        "stress",
        "--users",
        "20",
        "--target",
        &server.base,
        "--mode",
        "fenced",
        "--json",
    ]);
    assert_eq!(raced.status.code(), Some(0), "{}", text(&raced.stderr));
    let body = json(&raced);
    assert_eq!(
        (&body["status_codes"]["201"], &body["verdict"]),
        (&serde_json::json!(1), &serde_json::json!("SAFE")),
        "{body}"
    );
    assert_eq!(cli.reference_slot(), (1, 1, 1), "from the database");
    assert!(token() >= 2, "serve drew its tokens from the cluster");
}

/// `--chaos pause-redis` over a cluster pauses every node, not the one a keyless command happens
/// to reach: every node counts a `CLIENT PAUSE`, and the lock strategy fails closed (errors,
/// nothing oversold).
#[test]
fn pausing_the_cluster_pauses_every_node_and_the_lock_fails_closed() {
    let cluster = Cluster::up();
    let cli = Cli::new();
    cli.reset();
    let out = cluster.stress(
        &cli,
        &[
            "--mode",
            "locked",
            "--hold-ms",
            "300",
            "--lock-wait-ms",
            "3000",
            "--chaos",
            "pause-redis@100",
        ],
    );
    // Each node counts the CLIENT PAUSE it was sent (a fresh cluster: none before this run).
    let paused: Vec<bool> = (cluster.base..cluster.base + 6)
        .map(|port| {
            let out = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "INFO", "commandstats"])
                .output()
                .expect("redis-cli runs");
            text(&out.stdout).contains("cmdstat_client|pause:calls=")
        })
        .collect();
    assert_eq!(paused, [true; 6], "every node paused");
    let body = json(&out);
    assert_eq!(body["verdict"], "SAFE", "{body}");
    assert!(body["errors"].as_u64() >= Some(1), "{body}");
    let (_, booked, _) = cli.reference_slot();
    assert!(booked <= 1, "from the database: {booked} booked");
}

/// `serve --redis-cluster` starts while no node answers (the lock modes answer 503 meanwhile),
/// and picks the cluster up once it comes — no restart.
#[test]
fn serve_started_before_the_cluster_picks_it_up() {
    let cluster = Cluster::on_free_ports();
    let cli = Cli::new();
    cli.reset();
    let server = ServeProcess::start(
        &cli,
        &["--mode", "locked", "--redis-cluster", &cluster.urls],
    );
    let one = || {
        let out = cli.run(&[
            "stress",
            "--users",
            "1",
            "--target",
            &server.base,
            "--mode",
            "locked",
            "--json",
        ]);
        json(&out)["status_codes"].clone()
    };
    assert_eq!(one(), serde_json::json!({"503": 1}), "no cluster yet");
    cluster.start();
    assert_eq!(
        one(),
        serde_json::json!({"201": 1}),
        "the cluster, picked up"
    );
    assert_eq!(cli.reference_slot(), (1, 1, 1), "from the database");
}
