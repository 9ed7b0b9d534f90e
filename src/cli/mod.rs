//! The command line, as clap types. Values are parsed into domain types here; combinations of
//! flags are checked in [`config`](crate::config) (and [`race`](crate::race) for `race`).
//!
//! This file holds the top level (`Cli`, the global connection flags, the subcommands) and the
//! value parsers; each command's flags are a file of their own (`stress.rs`, `race.rs`, …), and
//! the groups several commands flatten in (the stay, the slow work, the lock, the retries) are
//! `groups.rs`. A new command's flags are a new file here.

use chrono::NaiveDate;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::{RoomId, UserId, parse_date, parse_nights};
use crate::strategy::{Expectation, Mode};

mod bench;
mod book;
mod db;
mod groups;
mod interleave;
mod race;
mod serve;
mod strategies;
mod stress;

pub use bench::{BenchCommand, BenchLockArgs};
pub use book::BookArgs;
pub use db::{DbCommand, DropArgs, ResetArgs};
pub use groups::{LockArgs, RetryArgs, StayArgs, StressMode, WorkArgs};
pub use interleave::InterleaveArgs;
pub use race::{Baseline, RaceArgs, RaceExpect};
pub use serve::ServeArgs;
pub use strategies::StrategiesArgs;
pub use stress::StressArgs;

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
