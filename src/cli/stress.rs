//! `stress`'s flags.

use super::*;

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
