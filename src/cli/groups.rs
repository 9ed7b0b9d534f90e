//! Flag groups several commands flatten into theirs: the stay, the slow work, the lock, the
//! serializable retries.

use super::*;

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
