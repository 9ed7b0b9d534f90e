//! `strategies`' flags.

use super::*;

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
