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

/// How many PostgreSQL connections the tests of one test binary may hold at once. The suite
/// shares its server with whatever else runs there — another copy of the suite, a CI job —
/// within `max_connections` (100 by default, 97 for clients): two copies at 44 each leave room
/// for the short-lived connections that create and drop databases.
pub const CONNECTION_BUDGET: u32 = 44;

static BUDGET: std::sync::Mutex<u32> = std::sync::Mutex::new(CONNECTION_BUDGET);
static BUDGET_FREED: std::sync::Condvar = std::sync::Condvar::new();

/// Connections reserved from [`CONNECTION_BUDGET`], given back when dropped.
pub struct Reserved(u32);

/// Waits until `n` connections of the budget are free and takes them. A test that reserves
/// before it connects can never push the suite past its budget, however many run at once.
pub fn reserve(n: u32) -> Reserved {
    let n = n.min(CONNECTION_BUDGET);
    let mut free = BUDGET
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    while *free < n {
        free = BUDGET_FREED
            .wait(free)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    *free -= n;
    Reserved(n)
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let mut free = BUDGET
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *free += self.0;
        BUDGET_FREED.notify_all();
    }
}

/// A database of the test's own, dropped (with FORCE, closing connections) when the value is
/// dropped — also when the test panics.
pub struct TestDb {
    pub url: String,
    /// The connections the test may hold on the shared server (released after the drop).
    pub budget: Option<Reserved>,
    /// Whether dropping drops the database (not on a private server, which goes whole).
    pub drop_database: bool,
}

/// The pool of a seeded test database: enough for a 20-user race and the final read.
pub const SEEDED_POOL: u32 = 21;

impl TestDb {
    /// A name and URL only; the database does not exist yet (for `db reset` to create it).
    pub fn unique_url() -> Self {
        let mut url = url::Url::parse(&server_url()).expect("DATABASE_URL is a URL");
        let name = format!("booking_test_{}", uuid::Uuid::new_v4().simple());
        url.set_path(&name);
        Self {
            url: url.to_string(),
            budget: None,
            drop_database: true,
        }
    }

    /// A freshly created, migrated and seeded database, and a repository on it with enough
    /// connections for a 20-user race.
    pub async fn seeded() -> (Self, Repo) {
        let mut test_db = Self::unique_url();
        // A 20-user race: one connection per user, one to read the final state.
        test_db.budget = Some(reserve(SEEDED_POOL + 1));
        db::reset(&test_db.url, &db::reference_hotel(), db::DEFAULT_TIMEOUT)
            .await
            .expect("db reset of the test database");
        // The tool's own connect options: statement time-out, application_name.
        let options =
            db::connect_options(&test_db.url, db::DEFAULT_TIMEOUT).expect("test URL parses");
        let pool = db::pool(options, SEEDED_POOL, db::DEFAULT_TIMEOUT)
            .await
            .expect("pool on the test database");
        (test_db, Repo::new(pool, db::DEFAULT_TIMEOUT))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.drop_database {
            return;
        }
        let url = self.url.clone();
        // Drop cannot await; a thread with its own runtime can, even inside a runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for cleanup");
            // Bounded, as every call to a server: a test that failed with its server frozen
            // must still end.
            let cleanup = async {
                if sqlx::Postgres::database_exists(&url).await.unwrap_or(false) {
                    let _ = sqlx::Postgres::force_drop_database(&url).await;
                }
            };
            runtime.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(10), cleanup).await;
            });
        })
        .join();
    }
}

/// Where every test's Redis keys live: `booking-cli-test:{uuid}:`. Fencing counters are never
/// deleted by the tool (by design), so `scripts/test.sh` removes `booking-cli-test:*` after the
/// suite — keys of the tests only, never anyone else's.
pub fn test_prefix() -> String {
    format!("booking-cli-test:{}:", uuid::Uuid::new_v4().simple())
}

/// A lock handle whose keys live under a prefix of this test's own.
pub async fn private_lock() -> RedisLock {
    let prefix = test_prefix();
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
        replicas: 0,
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
        replicas: 0,
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
    build_with(mode, context(repo, lock, None, lock_policy, hold_ms))
}

/// What a strategy needs: this repository and lock(s), 20 serializable retries.
pub fn context(
    repo: &Repo,
    lock: Option<RedisLock>,
    redlock: Option<booking_cli::lock::redlock::RedLock>,
    lock_policy: LockPolicy,
    hold_ms: u64,
) -> strategy::Context {
    strategy::Context {
        repo: repo.clone(),
        lock,
        redlock,
        tuning: strategy::Tuning {
            lock_policy,
            retry: retry_policy(20),
            payments: strategy::Payments::default(),
            hold: Duration::from_millis(hold_ms),
        },
        stop: booking_cli::stop::Stop::new(),
    }
}

#[track_caller]
pub fn build_with(mode: Mode, context: strategy::Context) -> Arc<dyn Strategy> {
    strategy::build(mode, context).expect("strategy builds")
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

/// A fingerprint of everything `book` or `stress` could write: (bookings, Σ booked_count
/// with the shards', Σ total_inventory).
pub async fn snapshot(url: &str) -> (i64, i64, i64) {
    let options = PgConnectOptions::from_str(url).expect("URL parses");
    let pool = sqlx::PgPool::connect_with(options).await.expect("connect");
    let snapshot = sqlx::query_as(
        "SELECT (SELECT count(*) FROM booking_cli.bookings),
                (SELECT coalesce(sum(booked_count), 0)::bigint FROM booking_cli.inventory)
                  + (SELECT coalesce(sum(booked), 0)::bigint FROM booking_cli.inventory_shards),
                (SELECT coalesce(sum(total_inventory), 0)::bigint FROM booking_cli.inventory)",
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
    args: Vec<String>,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
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
) -> booking_cli::run::StressConfig {
    booking_cli::run::StressConfig {
        mode,
        users: 20,
        room: booking_cli::domain::RoomId::new(1).expect("room 1"),
        rooms: 1,
        stay: booking_cli::domain::Stay::nights_from("2024-12-25".parse().expect("a date"), 1)
            .expect("one night"),
        mixed_ranges: false,
        inventory,
        shards: booking_cli::repo::DEFAULT_SHARDS,
        hold: Duration::from_millis(200),
        lock_policy,
        retry: retry_policy(20),
        payments: strategy::Payments::default(),
        expect: mode.default_expectation(1),
        processes: 1,
        chaos: vec![],
        duration: None,
        servers: 0,
        record: false,
    }
}

impl PrivateRedis {
    /// Like [`start`](Self::start), with extra `redis-server` arguments (e.g. `--requirepass`).
    pub async fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        let port_arg = port.to_string();
        let mut args = vec![
            "--port",
            port_arg.as_str(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        args.extend_from_slice(extra);
        let mut redis = Self {
            child: None,
            port,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        redis.restart().await;
        redis
    }

    /// Starts the server again on the same port (killing it first if it runs): empty, as a
    /// Redis that keeps nothing on disk comes back after a restart.
    pub async fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        wait_for_port(self.port).await;
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered — a server
    /// that stops answering after the connection is made. [`resume`](Self::resume) undoes it.
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "STOP");
        }
    }

    pub fn resume(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "CONT");
        }
    }
}

/// A free TCP port on loopback.
/// A `booking-cli serve` of the test's own on a free loopback port, killed when dropped.
pub struct ServeProcess {
    child: Option<std::process::Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub listen: String,
}

#[allow(dead_code)]
impl ServeProcess {
    /// `serve --listen … ARGS` with this test's servers.
    pub fn start(cli: &Cli, args: &[&str]) -> Self {
        Self::start_with(cli, args, |_| {})
    }

    /// Like [`start`](Self::start), with the command adjusted first (say, another `REDIS_URL`).
    pub fn start_with(cli: &Cli, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut all = vec!["serve", "--listen", listen.as_str()];
        all.extend_from_slice(args);
        let mut command = cli.command(&all);
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        adjust(&mut command);
        let child = command.spawn().expect("serve starts");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(&listen).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "serve did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child: Some(child),
            base: format!("http://{listen}"),
            listen,
        }
    }

    /// SIGTERM, then the exit status and stderr.
    pub fn terminate(mut self) -> (Option<i32>, String) {
        let child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        let out = child.wait_with_output().expect("exits");
        (out.status.code(), text(&out.stderr))
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP client for the tests' own requests (reqwest asks the process for a TLS provider).
#[allow(dead_code)]
pub fn client() -> reqwest::Client {
    booking_cli::sync::tls::install_default_provider();
    reqwest::Client::new()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn wait_for_port(port: u16) {
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing listens on port {port}");
}

/// Sends `kill -SIG pid`.
pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// The processes whose parent is `pid` (from /proc).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                // The fields after the command name, which is in parentheses: state, ppid, …
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// A PostgreSQL server of the test's own — initdb in a fresh private directory, started on a
/// free loopback port, trust auth — so that a test can freeze "PostgreSQL" without touching
/// anyone else's. Stopped, and its directory removed, when dropped.
pub struct PrivatePostgres {
    postmaster: Option<std::process::Child>,
    dir: std::path::PathBuf,
    pub port: u16,
}

/// How the private PostgreSQL's postmaster is started (again).
fn postmaster_command(dir: &std::path::Path, port: u16) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let data = dir.join("data");
    let mut postgres = std::process::Command::new(pg_bin_dir().join("postgres"));
    postgres
        .args(["-D", data.to_str().expect("utf-8 path")])
        .args([
            "-p",
            &port.to_string(),
            "-k",
            dir.to_str().expect("utf-8 path"),
        ])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(["-c", "max_connections=40"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some((uid, gid)) = run_as() {
        postgres.uid(uid).gid(gid);
    }
    postgres
}

impl PrivatePostgres {
    pub async fn start() -> Self {
        use std::os::unix::fs::DirBuilderExt;
        use std::os::unix::process::CommandExt;
        let bin = pg_bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "booking-cli-test-pg-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("a private directory");
        // PostgreSQL refuses to run as root: as root, it runs as the `postgres` user.
        let owner = run_as();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the directory");
        }
        let data = dir.join("data");
        let mut initdb = std::process::Command::new(bin.join("initdb"));
        initdb
            .args(["-D", data.to_str().expect("utf-8 path"), "-U", "postgres"])
            .args(["--auth=trust", "--no-sync"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some((uid, gid)) = owner {
            initdb.uid(uid).gid(gid);
        }
        assert!(
            initdb.status().expect("initdb runs").success(),
            "initdb failed"
        );
        let port = free_port();
        let server = Self {
            postmaster: Some(
                postmaster_command(&dir, port)
                    .spawn()
                    .expect("postgres starts"),
            ),
            dir,
            port,
        };
        server.ready().await;
        server
    }

    /// Ready when a real connection succeeds (it listens before it accepts sessions).
    async fn ready(&self) {
        let url = self.url("postgres");
        for _ in 0..300 {
            if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                pool.close().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the private PostgreSQL on port {} did not start", self.port);
    }

    /// Stops the server (fast shutdown: every session is terminated) and starts it again on
    /// the same port and data, as an operator's restart does.
    pub async fn restart(&mut self) {
        if let Some(mut postmaster) = self.postmaster.take() {
            signal(postmaster.id(), "INT");
            let _ = postmaster.wait();
        }
        self.postmaster = Some(
            postmaster_command(&self.dir, self.port)
                .spawn()
                .expect("postgres starts again"),
        );
        self.ready().await;
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Sends `sig` to the postmaster and every backend: `STOP` freezes the whole server —
    /// sockets open, nothing answered — and `CONT` resumes it.
    pub fn signal_all(&self, sig: &str) {
        let Some(postmaster) = &self.postmaster else {
            return;
        };
        let pid = postmaster.id();
        // Frozen first, the postmaster (it forks no new backend then); resumed last. A backend
        // may end on its own between the listing and its signal (its client left): that one
        // needs no signal.
        let send = |child: u32| {
            let gone = !std::path::Path::new(&format!("/proc/{child}")).exists();
            let status = std::process::Command::new("kill")
                .args([format!("-{sig}"), child.to_string()])
                .status()
                .expect("kill runs");
            let vanished = !std::path::Path::new(&format!("/proc/{child}")).exists();
            assert!(
                status.success() || gone || vanished,
                "kill -{sig} {child} failed"
            );
        };
        if sig == "CONT" {
            children_of(pid).into_iter().for_each(send);
            signal(pid, sig);
        } else {
            signal(pid, sig);
            children_of(pid).into_iter().for_each(send);
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut postmaster) = self.postmaster.take() {
            // Resume first: a stopped server cannot shut down. Then immediate shutdown.
            let pid = postmaster.id();
            let quietly = |sig: &str, pid: u32| {
                let _ = std::process::Command::new("kill")
                    .args([format!("-{sig}"), pid.to_string()])
                    .stderr(std::process::Stdio::null())
                    .status();
            };
            quietly("CONT", pid);
            for child in children_of(pid) {
                quietly("CONT", child);
            }
            quietly("QUIT", pid);
            let _ = postmaster.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where `initdb` and `postgres` are: `PG_BIN`, else `PATH`, else the newest
/// /usr/lib/postgresql/*/bin.
fn pg_bin_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return dir.into();
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").exists() && dir.join("postgres").exists())
    });
    if let Some(dir) = on_path {
        return dir;
    }
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL's server binaries (initdb, postgres): apt-get install postgresql")
}

/// As root, the `postgres` user's (uid, gid); otherwise None (run as oneself).
fn run_as() -> Option<(u32, u32)> {
    let id = |flag: &str, user: &str| -> Option<u32> {
        let out = std::process::Command::new("id")
            .args([flag, user])
            .output()
            .ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    let me = std::process::Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    Some((
        id("-u", "postgres").expect("a 'postgres' user to run PostgreSQL as"),
        id("-g", "postgres").expect("a 'postgres' group"),
    ))
}

// ---------------------------------------------------------------------------------------------
// The binary, as a user or CI runs it.

use std::process::{Command, Output};

use serde_json::Value;

pub const USER: &str = "6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f";

pub struct Cli {
    pub db: TestDb,
    pub prefix: String,
}

impl Cli {
    /// A database and key prefix of the test's own, and connections reserved for a 20-user
    /// run of the binary.
    pub fn new() -> Self {
        Self::with_budget(SEEDED_POOL + 1)
    }

    /// Like [`new`](Self::new), reserving `connections` (a `--processes` run needs one per
    /// user, one per worker and two for the parent).
    pub fn with_budget(connections: u32) -> Self {
        let mut db = TestDb::unique_url();
        db.budget = Some(reserve(connections));
        Self {
            db,
            prefix: test_prefix(),
        }
    }

    /// The same database and key prefix on another server (a [`PrivatePostgres`]).
    pub fn on_server(url: String) -> Self {
        Self {
            db: TestDb {
                url,
                budget: None,
                drop_database: false,
            },
            prefix: test_prefix(),
        }
    }

    /// The binary with this test's servers in its environment, ready to spawn or run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_booking-cli"));
        command
            .args(args)
            .env("DATABASE_URL", &self.db.url)
            .env("REDIS_URL", redis_url())
            .env_remove("REDIS_CLUSTER_URLS")
            .env("LOCK_KEY_PREFIX", &self.prefix)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("BOOKING_DB_TIMEOUT")
            .env_remove("BOOKING_THREADS");
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("the binary runs")
    }

    pub fn reset(&self) {
        let out = self.run(&["db", "reset"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "db reset: {}",
            text(&out.stderr)
        );
    }

    /// The registered strategies, in the registry's order, as `strategies --names` lists them.
    pub fn strategy_names(&self) -> Vec<String> {
        let out = self.run(&["strategies", "--names"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_owned).collect()
    }

    pub fn snapshot(&self) -> (i64, i64, i64) {
        block_on(snapshot(&self.db.url))
    }

    /// (total_inventory, booked_count, confirmed rows) of room 1 on 2024-12-25, from the database.
    pub fn reference_slot(&self) -> (i64, i64, i64) {
        block_on(async {
            let pool = sqlx::PgPool::connect(&self.db.url).await.expect("connect");
            let row = sqlx::query_as(
                "SELECT total_inventory::bigint,
                        booked_count::bigint
                          + (SELECT coalesce(sum(booked), 0) FROM booking_cli.inventory_shards s
                             WHERE s.room_id = 1 AND s.date = '2024-12-25')::bigint,
                        (SELECT count(*) FROM booking_cli.bookings
                         WHERE room_id = 1 AND status = 'confirmed'
                           AND start_date <= '2024-12-25' AND end_date > '2024-12-25')
                 FROM booking_cli.inventory WHERE room_id = 1 AND date = '2024-12-25'",
            )
            .fetch_one(&pool)
            .await
            .expect("slot query");
            pool.close().await;
            row
        })
    }

    /// What an interrupted 20-user `stress --json` at inventory 5 must leave: exit 130, a
    /// partial report that accounts for every user, a counter equal to the rows with some but
    /// not all rooms sold, and no lock key.
    #[track_caller]
    pub fn assert_interrupted(&self, out: &Output) {
        assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
        let body = json(out);
        let interrupted = body["interrupted"].as_u64().unwrap_or(0);
        assert!(interrupted > 0, "{body}");
        assert_eq!(
            body["created"].as_u64().unwrap_or(0)
                + interrupted
                + body["errors"].as_u64().unwrap_or(99),
            20,
            "{body}"
        );
        let (total, booked, rows) = self.reference_slot();
        assert_eq!(total, 5);
        assert_eq!(booked, rows, "no count without its row");
        assert!((1..5).contains(&booked), "interrupted early: {booked}");
        let leftover = block_on(async {
            let lock = booking_cli::lock::RedisLock::connect(&redis_url(), &self.prefix)
                .await
                .expect("redis");
            lock.leftover_keys().await.expect("scan")
        });
        assert!(leftover.is_empty(), "locks left: {leftover:?}");
    }
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            text(&out.stdout)
        )
    })
}

/// `race` aimed at a `serve` at `base` on the reference slot (room 1, 2024-12-25): the URL, a
/// booking body with a fresh user each, 201 as the success, a `--setup` that empties the slot,
/// the oversold `--check` and the `--count` of its confirmed rows — booking-cli's own invariant
/// written as a user of `race` would write it. `extra` follows.
pub fn serve_race(cli: &Cli, base: &str, extra: &[&str]) -> Command {
    let night = "room_id = 1 AND start_date <= '2024-12-25' AND end_date > '2024-12-25'";
    let setup = format!(
        "DELETE FROM booking_cli.bookings WHERE {night}; \
         UPDATE booking_cli.inventory SET booked_count = 0, total_inventory = 1 \
         WHERE room_id = 1 AND date = '2024-12-25'"
    );
    let count =
        format!("SELECT count(*) FROM booking_cli.bookings WHERE status = 'confirmed' AND {night}");
    let url = format!("{base}/api/bookings");
    let mut args = vec![
        "race",
        "--url",
        &url,
        "-d",
        r#"{"user_id": "{{uuid}}", "room_id": 1, "start_date": "2024-12-25", "end_date": "2024-12-26"}"#,
        "--success",
        "201",
        "--setup",
        &setup,
        "--check",
        "SELECT room_id, date, total_inventory, booked_count FROM booking_cli.inventory \
         WHERE booked_count > total_inventory",
        "--count",
        &count,
    ];
    args.extend_from_slice(extra);
    let mut command = cli.command(&args);
    command.env("CHECK_DATABASE_URL", &cli.db.url);
    command
}
