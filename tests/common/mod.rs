//! Test helpers: a private database per test, a private Redis key prefix per test, and races
//! released by a barrier.
#![allow(dead_code)] // each test binary uses its own subset

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use booking_cli::backoff::Backoff;
use booking_cli::db;
use booking_cli::domain::{BookingRequest, Outcome};
use booking_cli::error::BookingError;
use booking_cli::lock::{LockPolicy, RedisLock};
use booking_cli::repo::Repo;
use booking_cli::strategy::{self, Mode, RetryPolicy, Strategy};
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

/// The server the tests create their databases on (`DATABASE_URL`, set by .cargo/config.toml
/// or scripts/services.sh); only its host, port and credentials are used.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/booking".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A database of the test's own, dropped (with FORCE, closing connections) when the value is
/// dropped — also when the test panics.
pub struct TestDb {
    pub url: String,
}

impl TestDb {
    /// A name and URL only; the database does not exist yet (for `db reset` to create it).
    pub fn unique_url() -> Self {
        let mut url = url::Url::parse(&server_url()).expect("DATABASE_URL is a URL");
        let name = format!("booking_test_{}", uuid::Uuid::new_v4().simple());
        url.set_path(&name);
        Self {
            url: url.to_string(),
        }
    }

    /// A freshly created, migrated and seeded database, and a repository on it with enough
    /// connections for a 20-user race.
    pub async fn seeded() -> (Self, Repo) {
        let test_db = Self::unique_url();
        db::reset(&test_db.url, &db::reference_hotel())
            .await
            .expect("db reset of the test database");
        // The tool's own connect options: statement time-out, application_name.
        let options = db::connect_options(&test_db.url).expect("test URL parses");
        let pool = db::pool(options, 30)
            .await
            .expect("pool on the test database");
        (test_db, Repo::new(pool))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = self.url.clone();
        // Drop cannot await; a thread with its own runtime can, even inside a runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for cleanup");
            runtime.block_on(async {
                if sqlx::Postgres::database_exists(&url).await.unwrap_or(false) {
                    let _ = sqlx::Postgres::force_drop_database(&url).await;
                }
            });
        })
        .join();
    }
}

/// A lock handle whose keys live under a prefix of this test's own.
pub async fn private_lock() -> RedisLock {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    RedisLock::connect(&redis_url(), &prefix)
        .await
        .expect("Redis at REDIS_URL answers")
}

pub fn policy(ttl_ms: u64, retries: u32, retry_delay_ms: u64) -> LockPolicy {
    LockPolicy {
        ttl: Duration::from_millis(ttl_ms),
        retries,
        retry_delay: Duration::from_millis(retry_delay_ms),
        wait: None,
        renew: false,
    }
}

/// A deadline lock policy: wait up to `wait_ms`, backoff base `base_ms`.
pub fn deadline_policy(wait_ms: u64, base_ms: u64) -> LockPolicy {
    LockPolicy {
        ttl: Duration::from_secs(10),
        retries: 0,
        retry_delay: Duration::from_millis(base_ms),
        wait: Some(Duration::from_millis(wait_ms)),
        renew: false,
    }
}

/// Serializable retries: `retries` more attempts, backoff base 20 ms.
pub fn retry_policy(retries: u32) -> RetryPolicy {
    RetryPolicy {
        retries,
        backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(320),
        },
    }
}

/// The reference lock policy: 5 s TTL, 10 retries 50 ms apart.
pub fn reference_policy() -> LockPolicy {
    policy(5000, 10, 50)
}

pub fn build(
    mode: Mode,
    repo: &Repo,
    lock: Option<RedisLock>,
    lock_policy: LockPolicy,
    hold_ms: u64,
) -> Arc<dyn Strategy> {
    strategy::build(
        mode,
        strategy::Context {
            repo: repo.clone(),
            lock,
            redlock: None,
            lock_policy,
            retry: retry_policy(20),
            hold: Duration::from_millis(hold_ms),
            stop: booking_cli::stop::Stop::new(),
        },
    )
    .expect("strategy builds")
}

/// Books every request concurrently, all released by one barrier; results in request order.
pub async fn race(
    strategy: Arc<dyn Strategy>,
    requests: Vec<BookingRequest>,
) -> Vec<Result<Outcome, BookingError>> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let mut set = JoinSet::new();
    for (i, request) in requests.into_iter().enumerate() {
        let strategy = Arc::clone(&strategy);
        let barrier = Arc::clone(&barrier);
        set.spawn(async move {
            barrier.wait().await;
            (i, strategy.book(&request).await)
        });
    }
    let mut results: Vec<_> = set.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// A fingerprint of everything `book` or `stress` could write: (bookings, Σ booked_count,
/// Σ total_inventory).
pub async fn snapshot(url: &str) -> (i64, i64, i64) {
    let options = PgConnectOptions::from_str(url).expect("URL parses");
    let pool = sqlx::PgPool::connect_with(options).await.expect("connect");
    let snapshot = sqlx::query_as(
        "SELECT (SELECT count(*) FROM bookings),
                (SELECT coalesce(sum(booked_count), 0)::bigint FROM inventory),
                (SELECT coalesce(sum(total_inventory), 0)::bigint FROM inventory)",
    )
    .fetch_one(&pool)
    .await
    .expect("snapshot query");
    pool.close().await;
    snapshot
}

/// A redis-server of the test's own on a free loopback port, killed when dropped (also when
/// the test fails), so that a test can stop "Redis" without touching anyone else's.
pub struct PrivateRedis {
    child: Option<std::process::Child>,
    pub port: u16,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let redis = Self {
            child: Some(child),
            port,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("private redis-server on port {port} did not start");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL): no goodbye to its clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The reference run — 20 users, room 1, the night of 2024-12-25, 200 ms hold — with this
/// strategy, inventory and lock policy. Tests change what they need.
pub fn stress_config(
    mode: Mode,
    inventory: i32,
    lock_policy: LockPolicy,
) -> booking_cli::stress::StressConfig {
    booking_cli::stress::StressConfig {
        mode,
        users: 20,
        room: booking_cli::domain::RoomId::new(1).expect("room 1"),
        rooms: 1,
        stay: booking_cli::domain::Stay::nights_from("2024-12-25".parse().expect("a date"), 1)
            .expect("one night"),
        mixed_ranges: false,
        inventory,
        hold: Duration::from_millis(200),
        lock_policy,
        retry: retry_policy(20),
        expect: mode.default_expectation(1),
        processes: 1,
        chaos: vec![],
        duration: None,
    }
}
