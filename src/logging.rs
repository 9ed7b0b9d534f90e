//! Logs go to stderr, so stdout stays clean for tables and JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// `-v` shows the lock story of every user (info), `-vv` adds detail (debug). `RUST_LOG`, when
/// set, wins. Without either, only warnings — from this crate; the drivers' own chatter stays
/// quiet unless asked for.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "booking_cli=warn",
        1 => "booking_cli=info",
        _ => "booking_cli=debug",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => EnvFilter::new(value),
        _ => EnvFilter::new(default),
    };
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // A second init (as in tests that call this twice) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .try_init();
}
