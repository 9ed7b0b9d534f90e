//! The command line, as clap types. Values are parsed into domain types here; combinations of
//! flags are checked in [`config`](crate::config).

use chrono::NaiveDate;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::{RoomId, UserId, parse_date, parse_nights};
use crate::strategy::{Expectation, Mode};

/// The default `DATABASE_URL`: the `docker-compose.yml` PostgreSQL.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/booking";
/// The default `REDIS_URL`: the `docker-compose.yml` Redis.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The default prefix of booking-cli's Redis keys: its own namespace on a shared Redis.
pub const DEFAULT_KEY_PREFIX: &str = "booking-cli:";

const EXAMPLES: &str = "\
Examples:
  booking-cli db reset
  booking-cli stress --users 20 --mode naive      # reproduce the overbooking race
  booking-cli stress --users 20 --mode locked     # the Redis lock lets exactly one through
  booking-cli stress --mode locked --json | jq .booked_count
  booking-cli book --user 6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f --room 2 --from 2024-12-24 --nights 2

Exit status: 0 success (book: created; stress: the expected outcome happened), 1 runtime error
(a server unreachable, …), 2 bad input, 3 the outcome was not the one wanted (book: 409 conflict;
stress: the expectation did not hold).";

/// Reproduce a hotel booking race on real PostgreSQL and Redis, and prove which fixes hold.
///
/// A booking checks availability, does slow work, increments booked_count and inserts the
/// booking. Twenty users booking the last room at once all pass the check: `stress --mode naive`
/// shows the hotel selling one room twenty times. `stress --mode locked` puts a Redis lock per
/// room-night around the same transaction and lets exactly one through. Verdicts are computed
/// from the database, never from the tool's own tallies.
#[derive(Debug, Parser)]
#[command(
    name = "booking-cli",
    version = env!("BOOKING_CLI_VERSION"),
    after_long_help = EXAMPLES,
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Show the lock story of every user (-v), and more detail (-vv). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Global")]
    pub verbose: u8,

    /// Worker threads of the async runtime [default: one per CPU core; bench lock: 1]. When the servers run on
    /// the same small machine, one thread avoids cross-thread wake-ups (see docs/performance.md)
    #[arg(long, global = true, env = "BOOKING_THREADS", hide_env_values = true, value_name = "N", help_heading = "Global",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    #[command(subcommand)]
    pub command: Command,
}

/// Where the servers are. Values from the environment are never shown in `--help`, and
/// passwords are masked in every message.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// PostgreSQL URL [default: postgres://postgres:***@127.0.0.1:5432/booking]
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_default_value = true,
        hide_env_values = true,
        global = true,
        value_name = "URL"
    )]
    pub database_url: String,

    /// Redis URL, used by the lock strategies; repeat it (or give a comma list) for --mode
    /// redlock, which locks on a majority of them [default: redis://127.0.0.1:6379]
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = DEFAULT_REDIS_URL,
        hide_default_value = true,
        hide_env_values = true,
        global = true,
        value_name = "URL",
        value_delimiter = ','
    )]
    pub redis_url: Vec<String>,

    /// A node of a Redis Cluster to lock on instead of --redis-url (any node: the client finds
    /// the others); repeat it, or give a comma list, for more seeds. Used by locked, fenced,
    /// bench lock, book, stress and serve; redlock keeps its independent --redis-url instances
    #[arg(
        long,
        env = "REDIS_CLUSTER_URLS",
        hide_env_values = true,
        global = true,
        value_name = "URL",
        value_delimiter = ','
    )]
    pub redis_cluster: Vec<String>,

    /// Put this before every Redis key booking-cli creates (locks, fencing counters), so that
    /// separate runs, and other applications, can share one Redis [default: booking-cli:]
    #[arg(
        long,
        env = "LOCK_KEY_PREFIX",
        hide_env_values = true,
        default_value = DEFAULT_KEY_PREFIX,
        hide_default_value = true,
        global = true,
        value_name = "PREFIX"
    )]
    pub lock_key_prefix: String,

    /// Client-side deadline of every PostgreSQL call — connecting, each statement, commit (e.g.
    /// 30s, 500ms). A stalled server cannot enforce its own statement_timeout
    #[arg(
        long,
        env = "BOOKING_DB_TIMEOUT",
        hide_env_values = true,
        default_value = "30s",
        global = true,
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub db_timeout: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the database
    #[command(subcommand)]
    Db(DbCommand),
    /// Make one booking through the same code path stress uses
    Book(BookArgs),
    /// Race many users for one slot and check the database afterwards
    Stress(StressArgs),
    /// Run two or three users' bookings step by step, in every ordering of their steps (or one
    /// given order), and check each ordering in the database
    Interleave(InterleaveArgs),
    /// Serve the booking API over HTTP (POST /api/bookings), on the same strategies
    Serve(ServeArgs),
    /// Fire a burst of requests at any booking endpoint, then judge it by an invariant on that
    /// service's own database (read-only)
    Race(Box<RaceArgs>),
    /// List the strategies: what each needs, what it is expected to show, its steps
    Strategies(StrategiesArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish)
    #[command(after_help = "\
Examples:
  booking-cli completions bash > ~/.local/share/bash-completion/completions/booking-cli
  booking-cli completions zsh > \"${fpath[1]}/_booking-cli\"
  booking-cli completions fish > ~/.config/fish/completions/booking-cli.fish")]
    Completions {
        /// The shell to complete in
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), one page covering every command
    #[command(after_help = "\
Examples:
  booking-cli man | man -l -
  booking-cli man > /usr/local/share/man/man1/booking-cli.1")]
    Man,
    /// Measure a building block alone (used by scripts/bench.sh)
    #[command(subcommand)]
    Bench(BenchCommand),
}

impl Command {
    /// Worker threads when `--threads` is not given: `bench lock` measures one multiplexed
    /// Redis connection, whose every command is a wake-up of the task that sent it; on a second
    /// worker thread that wake-up crosses threads, and the lock runs at about half its speed
    /// (82,000 against 144,000 pairs/s on the 2-core development machine). Everything else
    /// uses one thread per core.
    pub fn default_threads(&self) -> Option<u16> {
        match self {
            Command::Bench(BenchCommand::Lock(_)) => Some(1),
            _ => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Acquire + release pairs per second on distinct keys through the lock code, printed as
    /// one JSON object (on one runtime thread unless --threads says otherwise: the lock is one
    /// connection's round trips, and a second thread only adds cross-thread wake-ups)
    Lock(BenchLockArgs),
}

#[derive(Debug, Args)]
pub struct BenchLockArgs {
    /// Concurrent tasks (they share one multiplexed connection)
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,

    /// How long to run (e.g. 5s)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub duration: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the database if missing, drop the project's tables, migrate and seed the hotel
    ///
    /// Seeds rooms 1-10 over the nights 2024-12-20 to 2025-01-05 with 5 rooms each, except room 1
    /// on 2024-12-25, which has 1 (the reference scenario). Non-interactive and idempotent.
    ///
    /// Example: booking-cli db reset --rooms 1000   # 1,000 one-night slots for a scale run
    Reset(ResetArgs),
    /// Remove everything booking-cli created: the booking_cli schema and every Redis key under
    /// the key prefix (locks, holds, fence counters), and nothing else
    ///
    /// The database itself stays (it may hold other schemas). Refuses, naming them, when objects
    /// outside booking_cli depend on objects in it. Redis that does not answer is said (exit 1)
    /// after the schema is dropped.
    ///
    /// Example: booking-cli db drop --json
    Drop(DropArgs),
}

#[derive(Debug, Args)]
pub struct DropArgs {
    /// Print one JSON object on stdout: {"database", "schema_dropped", "redis_keys_deleted"}
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// How many room types to seed, ids 1 to TYPES (beyond the ten named ones, "Room 11", …), each
    /// with 5 rooms a night. Not the rooms per night: stress sets those with --inventory
    #[arg(long, value_name = "TYPES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rooms: u32,

    /// Split every night's rooms over this many rows of inventory_shards, which --mode sharded
    /// books on (0: none; stress splits its slot again with its own --shards)
    #[arg(long, value_name = "K", default_value_t = crate::repo::DEFAULT_SHARDS, value_parser = clap::value_parser!(u32).range(0..=1_024))]
    pub shards: u32,

    /// Print one JSON object on stdout: {"database", "created_database", "migrations", "rooms",
    /// "inventory_rows", "shard_rows"}
    #[arg(long)]
    pub json: bool,
}

/// Which nights: `--from` plus `--nights` or `--to`.
#[derive(Debug, Args)]
pub struct StayArgs {
    /// First night of the stay (YYYY-MM-DD)
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub from: NaiveDate,

    /// Number of nights [default: 1]
    #[arg(long, value_name = "N", value_parser = parse_nights, conflicts_with = "to")]
    pub nights: Option<u32>,

    /// Day the guest leaves (exclusive; YYYY-MM-DD), instead of --nights
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub to: Option<NaiveDate>,
}

/// What `book`, `stress` and `serve` share: the slow work of a booking, and how its protection
/// waits (the lock, serializable retries).
#[derive(Debug, Args)]
#[command(next_help_heading = "Slow work")]
pub struct WorkArgs {
    /// Simulated slow work between the availability check and the write, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub hold_ms: u64,

    #[command(flatten)]
    pub lock: LockArgs,

    #[command(flatten)]
    pub retry: RetryArgs,

    /// Probability (0 to 1) that the slow work — a payment — fails (reserve: the hold is
    /// cancelled and its nights given back)
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate, help_heading = "Slow work")]
    pub fail_rate: f64,

    /// Seed of the RNG that decides which payments fail, so that a run can be reproduced
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        help_heading = "Slow work"
    )]
    pub fail_seed: u64,

    /// How long a reserve hold lives, in milliseconds: a hold whose payment (--hold-ms) has not
    /// ended by then expires and its nights go back; a payment that ends later is refused
    #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=86_400_000), help_heading = "Slow work")]
    pub hold_ttl_ms: u64,
}

/// How the lock of `--mode locked`, `fenced` and `redlock` is taken.
#[derive(Debug, Args)]
#[command(next_help_heading = "Lock")]
pub struct LockArgs {
    /// Lifetime of a lock, in milliseconds (PX). A lock is relied on only until TTL minus a
    /// drift allowance after its SET: no booking starts on an expired lock
    #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub lock_ttl_ms: u64,

    /// How many times a busy lock is tried again after the first attempt. Fixed retries are the
    /// reference design: at --inventory above 1 they run out while the lock is still changing
    /// hands, so users are refused while rooms are left — reported as UNDER_SOLD and tolerated
    /// by the safe expectation for every lock strategy alike; --lock-wait-ms avoids it
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub lock_retries: u32,

    /// Pause between two attempts, in milliseconds (with --lock-wait-ms: the backoff's base)
    #[arg(long, value_name = "MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub lock_retry_delay_ms: u64,

    /// Wait for a busy lock until this deadline, with exponential backoff and full jitter,
    /// instead of --lock-retries fixed retries
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub lock_wait_ms: Option<u64>,

    /// Renew held locks every ttl/3 (compare-and-extend) while the booking runs, and abandon
    /// it if a renewal fails before its commit (locked only)
    #[arg(long)]
    pub lock_renew: bool,

    /// Hold a lock only once N replicas acknowledged it (WAIT N, within 200 ms); otherwise give
    /// it back and count the attempt as busy. On a Redis Cluster, a lock its primary took to
    /// its grave is a lock a second client can take (locked, fenced)
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub lock_replicas: u32,
}

/// How `--mode serializable` retries a transaction PostgreSQL aborted.
#[derive(Debug, Args)]
#[command(next_help_heading = "Serializable")]
pub struct RetryArgs {
    /// How many times an aborted serializable transaction is run again
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub serializable_retries: u32,

    /// Base of the exponential backoff (full jitter, ceiling 16 × base) between two attempts;
    /// 0 retries at once, as `pgbench --max-tries` does
    #[arg(long, value_name = "MS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub serializable_backoff_ms: u64,
}

/// `--mode` of `stress`: one strategy, or every one in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StressMode {
    One(Mode),
    All,
}

impl StressMode {
    /// The strategies to run, in order.
    pub fn modes(self) -> Vec<Mode> {
        match self {
            StressMode::One(mode) => vec![mode],
            StressMode::All => Mode::ALL.to_vec(),
        }
    }
}

pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("'{s}' is not a duration like 10s or 500ms: {e}"))?;
    if d.is_zero() || d > std::time::Duration::from_secs(3600) {
        return Err(format!(
            "'{s}' is out of range: a duration between 1ms and 1h"
        ));
    }
    Ok(d)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "'{s}' is not a probability between 0 and 1 (e.g. 0.3)"
        )),
    }
}

fn stress_mode() -> impl TypedValueParser<Value = StressMode> {
    let names = Mode::ALL.iter().map(|m| m.name()).chain(["all"]);
    PossibleValuesParser::new(names).map(|name| {
        Mode::from_str(&name, false)
            .map(StressMode::One)
            .unwrap_or(StressMode::All)
    })
}

/// `book`: one booking.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  booking-cli book --user 6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f --room 1 --from 2024-12-25
  booking-cli book --user 6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f --room 3 --from 2024-12-30 --to 2025-01-02 --mode naive

Exit status: 0 created (201), 3 conflict (409), 1 runtime error, 2 bad input.")]
#[command(next_help_heading = "Booking")]
pub struct BookArgs {
    /// The guest (a UUID)
    #[arg(long, value_name = "UUID", value_parser = clap::value_parser!(UserId))]
    pub user: UserId,

    /// The room type (rooms.id)
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(RoomId))]
    pub room: RoomId,

    #[command(flatten)]
    pub stay: StayArgs,

    /// How the booking is protected
    #[arg(long, value_enum, default_value_t = Mode::Locked)]
    pub mode: Mode,

    #[command(flatten)]
    pub work: WorkArgs,

    /// Print the outcome as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// `serve`: the booking API.
#[derive(Debug, Args)]
#[command(after_help = "\
Endpoints:
  POST /api/bookings                 {\"user_id\": UUID, \"room_id\": 1, \"start_date\": \"2024-12-25\", \"end_date\": \"2024-12-26\"}
                                     201 created, 409 sold out, 503 lock busy (Retry-After); header X-Booking-Mode picks the strategy
  GET  /api/bookings/{id}            the booking, or 404
  GET  /api/rooms/{id}/availability?from=YYYY-MM-DD&to=YYYY-MM-DD
  GET  /ping, /healthz, /metrics     liveness, PostgreSQL and Redis health, Prometheus text
Errors are application/problem+json (400, 404, 405, 413, 415, 422, 500, 503).

Examples:
  booking-cli serve                                   # http://127.0.0.1:8080, --mode locked
  booking-cli serve --listen 127.0.0.1:8081 --mode naive
  curl -si -H 'Content-Type: application/json' -d '{\"user_id\":\"6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f\",\"room_id\":1,\"start_date\":\"2024-12-25\",\"end_date\":\"2024-12-26\"}' http://127.0.0.1:8080/api/bookings

Exit status: 0 after a graceful shutdown (SIGTERM or Ctrl-C), 1 runtime error (e.g. the address is
in use, or bookings still running after the drain deadline), 2 bad input.")]
#[command(next_help_heading = "Server")]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(
        long,
        env = "BOOKING_LISTEN",
        hide_env_values = true,
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: std::net::SocketAddr,

    /// The strategy of a request without an X-Booking-Mode header
    #[arg(long, value_enum, default_value_t = Mode::Locked)]
    pub mode: Mode,

    #[command(flatten)]
    pub work: WorkArgs,

    /// Status of a refusal worth retrying (lock busy, retries exhausted): 503 with Retry-After,
    /// or 409 as the original API answered, for old load scripts
    #[arg(long, value_name = "STATUS", default_value = "503", value_parser = ["503", "409"], help_heading = "Server")]
    pub busy_status: String,

    /// Deadline of one whole booking (503 after it)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, help_heading = "Server")]
    pub booking_timeout: std::time::Duration,

    /// Bookings in flight at most; more are answered 503 at once instead of queueing
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000), help_heading = "Server")]
    pub max_in_flight: u32,

    /// How long a shutdown waits for the bookings in flight
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, help_heading = "Server")]
    pub drain: std::time::Duration,

    /// How long a client may take to send a request's headers — and to start one at all on a
    /// new or idle keep-alive connection — before the connection is closed
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, help_heading = "Server")]
    pub header_timeout: std::time::Duration,

    /// How long a client may take to send a request's body once its headers are in (408 after
    /// it)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, help_heading = "Server")]
    pub body_timeout: std::time::Duration,

    /// Open connections at most; further clients wait in the listen queue until one closes
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000), help_heading = "Server")]
    pub max_connections: u32,
}

/// `race`: a burst at anyone's endpoint, judged by their own database. Every value may also
/// come from `--config FILE` (TOML, the same names); a flag overrides the file.
#[derive(Debug, Args, Default)]
#[command(after_help = "\
Examples:
  booking-cli race --config race.toml                    # the gate, checked into your repo
  booking-cli race --config race.toml --expect violated  # a naive build must still break
  booking-cli race --url http://127.0.0.1:8000/book -d '{\"user\": \"{{uuid}}\", \"sku\": 42}' --success 201
      --check-db postgres://app@127.0.0.1/shop --repeat 20
      --setup \"update stock set sold = 0 where sku = 42; delete from orders where sku = 42\"
      --check \"select sku, sold, capacity from stock where sold > capacity\"
      --count \"select count(*) from orders where sku = 42\"        (one command)
  booking-cli race --url http://127.0.0.1:8000/book -H 'Authorization: Bearer {{env:TOKEN}}' ...

Placeholders in --url, -H and -d: {{uuid}} {{user}} {{run}} {{env:NAME}} (env values are masked).
Verdicts: VIOLATED (a --check returned rows, or successes > --max-successes), UNACCOUNTED (--count
disagrees with the successes acknowledged), UNTESTED (nothing broke, but fewer than
--min-successes requests succeeded), HELD (the checks found nothing). Held is met only with at
most --allow-errors requests unanswered or answered 5xx.
Exit status: 0 the expectation (--expect, default held) was met, 3 it was not, 1 runtime error
(the endpoint or the database unreachable), 2 bad input (nothing sent), 130 interrupted (Ctrl-C
or SIGTERM: the run in progress is not judged).")]
#[command(next_help_heading = "Request")]
pub struct RaceArgs {
    /// The endpoint (http:// or https://); placeholders allowed
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// The method [default: POST]
    #[arg(short = 'X', long, value_name = "METHOD")]
    pub method: Option<String>,

    /// A request header, 'Name: value' (repeatable; placeholders allowed in the value)
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// The request body (placeholders allowed); sent with Content-Type: application/json
    /// unless a -H names another
    #[arg(short = 'd', long, value_name = "BODY", conflicts_with = "data_file")]
    pub data: Option<String>,

    /// The request body, read from FILE (placeholders allowed)
    #[arg(long, value_name = "FILE")]
    pub data_file: Option<std::path::PathBuf>,

    /// Statuses that count as an acknowledged success, e.g. 201,200 [default: any 2xx]
    #[arg(long, value_name = "CODES", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(100..=599), help_heading = "Burst")]
    pub success: Vec<u16>,

    /// Attempts in the burst, each on a connection of its own opened before the start
    /// [default: 20]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000), help_heading = "Burst")]
    pub users: Option<u32>,

    /// Deadline of one request, connecting included [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Burst")]
    pub timeout: Option<std::time::Duration>,

    /// Runs, each after --setup; verdicts counted over them [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000), help_heading = "Burst")]
    pub repeat: Option<u32>,

    /// How the burst is released so that it arrives together: none, last-byte (all but each
    /// request's final byte sent before the start), single-packet (HTTP/2: every final frame
    /// in one write), auto (single-packet with --http2, else last-byte when there is a body)
    /// [default: auto]
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        hide_possible_values = true,
        help_heading = "Burst"
    )]
    pub sync: Option<crate::sync::Sync>,

    /// Speak HTTP/2 to the http:// endpoint, with prior knowledge (no upgrade); over https://
    /// it is negotiated (ALPN)
    #[arg(long, help_heading = "Burst")]
    pub http2: bool,

    /// Trust the certificates in FILE (PEM) for an https:// endpoint, besides the public roots
    #[arg(long, value_name = "FILE", help_heading = "Burst")]
    pub cacert: Option<std::path::PathBuf>,

    /// The service's own PostgreSQL, read only through the checks
    #[arg(
        long,
        value_name = "URL",
        env = "CHECK_DATABASE_URL",
        hide_env_values = true,
        help_heading = "Invariant"
    )]
    pub check_db: Option<String>,

    /// A query whose every row is a violation (repeatable); runs in a READ ONLY transaction
    #[arg(long = "check", value_name = "SQL", help_heading = "Invariant")]
    pub checks: Vec<String>,

    /// More acknowledged successes than N is a violation
    #[arg(long, value_name = "N", help_heading = "Invariant")]
    pub max_successes: Option<u64>,

    /// Fewer acknowledged successes than N in a run is UNTESTED, never HELD: a burst in which
    /// nobody got through (no session, no CSRF token, every request a 5xx) tested nothing
    /// [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000), help_heading = "Invariant")]
    pub min_successes: Option<u32>,

    /// Requests without an answer, or answered with a 5xx, that a held run may have; beyond
    /// it, held is not met (each may have written, or been the one that broke it) [default: 0]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000), help_heading = "Invariant")]
    pub allow_errors: Option<u32>,

    /// A query returning one number: what the service wrote, compared with the successes
    /// acknowledged (read before and after each run)
    #[arg(long, value_name = "SQL", help_heading = "Invariant")]
    pub count: Option<String>,

    /// SQL run before each run, e.g. resetting the stock (repeatable; the only SQL that writes)
    #[arg(long = "setup", value_name = "SQL", help_heading = "Invariant")]
    pub setup: Vec<String>,

    /// Statement time-out of every check, count and setup [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Invariant")]
    pub check_timeout: Option<std::time::Duration>,

    /// What the run must show: held (the CI gate), violated (the race reproduced), any
    /// [default: held]
    #[arg(long, value_enum, help_heading = "Invariant")]
    pub expect: Option<RaceExpect>,

    /// A TOML file holding any of these settings (flags override it)
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub config: Option<std::path::PathBuf>,

    /// Print one JSON document instead of the tables
    #[arg(long, help_heading = "Output")]
    pub json: bool,

    /// Write a JUnit XML report (one test case per run) to FILE
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub junit: Option<std::path::PathBuf>,

    /// Print the result as a GitHub-flavoured Markdown table (for a job summary)
    #[arg(long, help_heading = "Output", conflicts_with = "json")]
    pub markdown: bool,
}

/// `race --expect`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum RaceExpect {
    /// Every run held: the checks found nothing, every success accounted for
    Held,
    /// At least one run violated the invariant: the race is reproduced
    Violated,
    /// Nothing in particular: a measurement
    Any,
}

/// `stress`: many users, one slot.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  booking-cli stress --users 20 --mode naive               # exits 0 when it overbooks
  booking-cli stress --users 20 --mode locked              # exits 0 when it stays safe
  booking-cli stress --mode locked --inventory 3 --lock-retries 100
  booking-cli stress --mode naive --expect safe            # exits 3: CI catches the race
  booking-cli stress --mode locked --inventory 5 --lock-wait-ms 5000   # no under-selling
  booking-cli stress --mode all --inventory 3                          # every strategy, one table
  booking-cli stress --mode row-lock --nights 3 --mixed-ranges --rooms 2
  booking-cli stress --mode locked --json

Exit status: 0 the expected outcome happened (with --mode all: for every strategy), 3 it did not,
1 runtime error, 2 bad input.")]
#[command(next_help_heading = "Race")]
pub struct StressArgs {
    /// How many concurrent users
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub users: u32,

    /// How bookings are protected: one strategy, or `all` of them in turn on a freshly prepared
    /// slot each
    #[arg(long, value_parser = stress_mode())]
    pub mode: StressMode,

    /// The room type every user books (rooms.id; with --rooms, the first of the room types)
    #[arg(long, value_name = "ID", default_value = "1", value_parser = clap::value_parser!(RoomId))]
    pub room: RoomId,

    /// First night of the contested stay (YYYY-MM-DD)
    #[arg(long, value_name = "DATE", default_value = "2024-12-25", value_parser = parse_date)]
    pub from: NaiveDate,

    /// Number of nights every user books [default: 1]
    #[arg(long, value_name = "N", value_parser = parse_nights, conflicts_with = "to")]
    pub nights: Option<u32>,

    /// Day the guests leave (exclusive; YYYY-MM-DD), instead of --nights
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub to: Option<NaiveDate>,

    /// How many room types the users spread over: --room, --room + 1, … (1: everyone contends
    /// for the same room type). Not the rooms per night: that is --inventory
    #[arg(long, value_name = "TYPES", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub rooms: u32,

    /// Users book overlapping stays of --nights nights that start on different nights: user i
    /// starts i mod --nights nights before --from (needs --nights 2 or more)
    #[arg(long)]
    pub mixed_ranges: bool,

    /// Rooms available per night of each room type in the slot (total_inventory), set before the
    /// run [default: 1; with --duration, 1000000 so the slots never sell out]
    #[arg(long, value_name = "PER_NIGHT", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub inventory: Option<u32>,

    /// --mode sharded: split every night's rooms in the slot over this many rows, which
    /// bookings of one night take in parallel (set before the run, as --inventory)
    #[arg(long, value_name = "K", default_value_t = crate::repo::DEFAULT_SHARDS, value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub shards: u32,

    /// Closed loop for this long (e.g. 10s, 500ms): every user books again as soon as its last
    /// booking ended, one night at a time, spread over --rooms and the nights from --from to
    /// --to; reports bookings per second
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,

    #[command(flatten)]
    pub work: WorkArgs,

    /// Split the users over this many operating-system processes of this tool, started
    /// together against the same servers (one combined report)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64), help_heading = "Race")]
    pub processes: u32,

    /// PostgreSQL connections to book on (one process). Users take turns on them when there
    /// are more users than connections [default: one per user, plus one, when PostgreSQL
    /// accepts that many — so that every user starts at the same instant; otherwise 32]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=10_000), help_heading = "Race")]
    pub connections: Option<u32>,

    /// Inject a fault MS milliseconds after the users start: kill-backend (terminate one open
    /// booking transaction) or pause-redis (CLIENT PAUSE for 5 s); repeatable
    #[arg(long, value_name = "FAULT@MS", value_parser = clap::value_parser!(crate::chaos::Chaos), help_heading = "Race")]
    pub chaos: Vec<crate::chaos::Chaos>,

    /// Race a running `booking-cli serve` over HTTP instead of calling the strategies here: each
    /// user POSTs /api/bookings to URL, with --mode as X-Booking-Mode. Repeat it (or give a comma
    /// list) to spread the users round-robin over several servers. DATABASE_URL must reach the
    /// servers' database: the slot is prepared and the verdict read there
    #[arg(long, value_name = "URL", value_delimiter = ',', help_heading = "Race")]
    pub target: Vec<String>,

    /// With --target: how the burst is released so that it arrives together: none, last-byte
    /// (all but each request's final byte sent before the start), single-packet (HTTP/2 with
    /// prior knowledge, or ALPN over https: every final frame in one write), auto (single-packet
    /// where the server speaks HTTP/2, else last-byte; none with --duration) [default: auto]
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        hide_possible_values = true,
        requires = "target",
        help_heading = "Race"
    )]
    pub sync: Option<crate::sync::Sync>,

    /// With --target: trust the certificates in FILE (PEM) for an https:// server, besides the
    /// public roots
    #[arg(long, value_name = "FILE", requires = "target", help_heading = "Race")]
    pub cacert: Option<std::path::PathBuf>,

    /// Run the whole race this many times, each on a freshly prepared slot, and report how
    /// often each verdict occurred (exit 0 only when every run met its expectation)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000), help_heading = "Race")]
    pub repeat: u32,

    /// Internal: run as one worker process of `--processes`, whose users are numbered from here
    #[arg(long, hide = true, value_name = "K")]
    pub worker_first_user: Option<u32>,

    /// Print one JSON object on stdout instead of the tables (an array with --mode all)
    #[arg(long, help_heading = "Output")]
    pub json: bool,

    /// After the tables, draw one lane per user on a shared time axis: each phase with its own
    /// glyph (lock wait, check, slow work, write, commit), where each refusal came, and where
    /// the slot became overbooked
    #[arg(long, help_heading = "Output")]
    pub timeline: bool,

    /// Write the run as Chrome Trace Event JSON to FILE (open it in ui.perfetto.dev or
    /// chrome://tracing): one track per user, one event per phase, a counter of bookings
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub trace: Option<std::path::PathBuf>,

    /// Write a self-contained HTML report to FILE: the tables, the final state, the verdicts,
    /// latency histograms and swimlanes (no external script, font or style)
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub report: Option<std::path::PathBuf>,

    /// Write the run as JUnit XML to FILE: one test case per strategy (per run with --repeat),
    /// failing, with the verdict and the numbers, when its expectation did not hold
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub junit: Option<std::path::PathBuf>,

    /// Print the comparison as a GitHub-flavoured Markdown table instead of the tables (for
    /// $GITHUB_STEP_SUMMARY)
    #[arg(long, conflicts_with = "json", help_heading = "Output")]
    pub markdown: bool,

    /// What the run must show for exit status 0 [default: overbooking for naive and lost-update,
    /// and for mutex with --processes > 1; safe for the others]
    #[arg(long, value_enum, help_heading = "Output")]
    pub expect: Option<Expectation>,
}

/// `strategies`: the registry, for people and scripts.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  booking-cli strategies
  booking-cli strategies --names     # one --mode value per line, for scripts")]
pub struct StrategiesArgs {
    /// Print only the names, one per line, in the order --mode all runs them
    #[arg(long, conflicts_with = "json")]
    pub names: bool,

    /// Print a JSON array
    #[arg(long)]
    pub json: bool,
}

/// `interleave`: users run step by step, in every ordering or one.
#[derive(Debug, Args)]
#[command(after_help = "\
Each user (a, b, c) books the night of 2024-12-25 in room 1, set to one room before every
ordering, through the strategy's real code, paused at its step boundaries: naive check, write,
commit; locked lock, check, write, commit, unlock; row-lock lock-rows, check, write, commit; …
(the summary lists them). A step that blocks shows <waiting ...> (a PostgreSQL lock seen with
pg_blocking_pids, a busy Redis lock or mutex) and the schedule goes on; it shows
<... completed> when it resumes. Steps a schedule does not name run after it.

Examples:
  booking-cli interleave --mode naive          # every ordering; the first overbooking one, step by step
  booking-cli interleave --mode row-lock --schedule \"a.lock-rows b.lock-rows a.check a.write a.commit\"
  booking-cli interleave --mode all            # one matrix: which strategies overbook in which orderings
  booking-cli interleave --mode locked --json | jq .overbooked
  booking-cli interleave --mode all --report interleave.html   # the matrix and transcripts as one page

Exit status: 0 every strategy met its expectation (naive and lost-update overbook in some
ordering; every other strategy in none, with no error), 3 one did not, 2 bad input (an unknown
step, a schedule that breaks a user's own order), 1 runtime error.")]
#[command(next_help_heading = "Interleaving")]
pub struct InterleaveArgs {
    /// The strategy whose steps are interleaved, or `all` for one matrix of every strategy
    #[arg(long, value_parser = stress_mode())]
    pub mode: StressMode,

    /// How many users book the one room (named a, b, c)
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..=3))]
    pub users: u32,

    /// Run this one order instead of every ordering, and print it step by step: USER.STEP
    /// separated by spaces, each user's steps in the strategy's order
    #[arg(long, value_name = "STEPS")]
    pub schedule: Option<String>,

    /// Refuse a strategy with more orderings than this (three users of five steps have 756,756)
    #[arg(long, value_name = "N", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_orderings: u64,

    /// Print one JSON object on stdout (an array with --mode all)
    #[arg(long)]
    pub json: bool,

    /// Also write a self-contained HTML report to FILE: the counts and the transcripts shown
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn stress_defaults_are_the_reference_run() {
        let cli = Cli::try_parse_from(["booking-cli", "stress", "--mode", "locked"]).unwrap();
        let Command::Stress(args) = cli.command else {
            panic!("expected stress");
        };
        assert_eq!(args.mode, StressMode::One(Mode::Locked));
        assert_eq!(args.users, 20);
        assert_eq!(args.room.get(), 1);
        assert_eq!(args.from.to_string(), "2024-12-25");
        assert_eq!(args.inventory, None, "1 unless --duration");
        assert_eq!(args.work.hold_ms, 200);
        assert_eq!(
            (
                args.work.lock.lock_ttl_ms,
                args.work.lock.lock_retries,
                args.work.lock.lock_retry_delay_ms
            ),
            (5000, 10, 50)
        );
    }

    #[test]
    fn nights_and_to_cannot_both_be_given() {
        let parsed = Cli::try_parse_from([
            "booking-cli",
            "stress",
            "--mode",
            "naive",
            "--nights",
            "2",
            "--to",
            "2024-12-28",
        ]);
        assert!(parsed.is_err());
    }

    #[test]
    fn zero_users_is_refused() {
        assert!(
            Cli::try_parse_from(["booking-cli", "stress", "--mode", "naive", "--users", "0"])
                .is_err()
        );
    }
}

#[cfg(test)]
mod mode_tests {
    use super::*;

    #[test]
    fn every_strategy_and_all_parse_as_a_stress_mode() {
        for &mode in Mode::ALL {
            let cli =
                Cli::try_parse_from(["booking-cli", "stress", "--mode", mode.name()]).unwrap();
            let Command::Stress(args) = cli.command else {
                panic!("expected stress");
            };
            assert_eq!(args.mode, StressMode::One(mode));
        }
        let cli = Cli::try_parse_from(["booking-cli", "stress", "--mode", "all"]).unwrap();
        let Command::Stress(args) = cli.command else {
            panic!("expected stress");
        };
        assert_eq!(args.mode.modes(), Mode::ALL.to_vec());
    }
}
