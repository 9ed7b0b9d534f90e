//! `interleave`'s flags.

use super::*;

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
