//! The locks on a Redis Cluster: a cluster of the test's own (3 primaries, 3 replicas, private
//! ports), started and stopped by `scripts/cluster.sh` as a user runs it, and the reference run
//! over it — judged from the database.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Cli, json, text};

/// A cluster on six ports of its own, taken down (every node stopped, its directory removed)
/// when dropped, also when the test fails.
struct Cluster {
    base: u16,
    dir: PathBuf,
    urls: String,
}

impl Cluster {
    fn up() -> Self {
        let base = free_run();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cluster-{}", uuid::Uuid::new_v4().simple()));
        let cluster = Self {
            base,
            dir,
            urls: (base..base + 6)
                .map(|p| format!("redis://127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        let out = cluster.script("up");
        assert!(out.status.success(), "cluster up: {}", text(&out.stderr));
        cluster
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

/// Six consecutive free ports whose cluster-bus ports (+10000) are free too.
fn free_run() -> u16 {
    for _ in 0..200 {
        let base = 20_000 + rand::random::<u16>() % 25_000;
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
        let out = cli.run(&[
            "stress",
            "--users",
            "20",
            "--mode",
            mode,
            "--redis-cluster",
            &cluster.urls,
            "--json",
        ]);
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
    let out = Command::new("redis-cli")
        .args(["-c", "-p", &cluster.base.to_string(), "GET", &counter])
        .output()
        .expect("redis-cli runs");
    assert_eq!(
        text(&out.stdout).trim(),
        fenced_locks.to_string(),
        "{}",
        text(&out.stderr)
    );
    assert!(fenced_locks >= 1);
    let down = cluster.script("down");
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(
        !cluster.anything_listening(),
        "a node outlived cluster down"
    );
    assert!(!cluster.dir.exists());
}

/// A bad `--redis-cluster` URL is one line naming the variable, exit 2, nothing written.
#[test]
fn a_bad_cluster_url_is_refused() {
    let cli = Cli::new();
    cli.reset();
    let before = cli.snapshot();
    let out = cli.run(&[
        "book",
        "--user",
        common::USER,
        "--room",
        "1",
        "--from",
        "2024-12-25",
        "--mode",
        "locked",
        "--redis-cluster",
        "nonsense://x",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("REDIS_CLUSTER_URLS"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(cli.snapshot(), before);
}
