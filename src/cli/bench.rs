//! `bench`'s flags.

use super::*;

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
