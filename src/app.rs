//! The edge: dispatches a parsed command to its module in [`crate::cmd`], and says which exit
//! status an outcome or an error deserves. `main` only prints what comes back.

use std::process::ExitCode;

use crate::cli::{BenchCommand, Cli, Command, DbCommand};
use crate::cmd;
use crate::config::Connection;
use crate::db::DbError;
use crate::error::{BookingError, InputError};

/// The documented exit statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `book`: created. `stress`: the expected outcome happened.
    Success = 0,
    /// A server unreachable, a query failed, …
    RuntimeError = 1,
    /// Bad input: nothing was written.
    BadInput = 2,
    /// `book`: 409 conflict. `stress`: the expectation did not hold.
    Unexpected = 3,
    /// `stress` was interrupted (Ctrl-C): a partial report was printed. 128 + SIGINT.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

impl Exit {
    /// The status for an error: 2 when its chain holds an [`InputError`], else 1.
    pub fn for_error(error: &anyhow::Error) -> Self {
        if error.chain().any(|cause| cause.is::<InputError>()) {
            Exit::BadInput
        } else {
            Exit::RuntimeError
        }
    }
}

/// The error as one line: its context and causes joined by ": ", a cause left out when the
/// message before it already says it (sqlx and redis repeat their sources in their own
/// messages), line breaks folded, and every secret masked.
pub fn error_line(error: &anyhow::Error, secrets: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || parts.last().is_some_and(|last| last.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    crate::config::scrub(&parts.join(": "), secrets)
}

/// Runs one command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    // The commands that reach no server need no valid connection settings.
    match &cli.command {
        Command::Strategies(args) => return cmd::strategies::run(args),
        Command::Completions { shell } => return cmd::docs::completions(*shell),
        Command::Man => return cmd::docs::man(),
        // `race` reaches someone else's service and database, never booking-cli's own.
        Command::Race(args) => return cmd::race::run(args).await,
        _ => {}
    }
    let connection = Connection::from_args(&cli.connection).map_err(anyhow::Error::new)?;
    match cli.command {
        Command::Db(DbCommand::Reset(args)) => cmd::reset::run(&connection, &args).await,
        Command::Db(DbCommand::Drop(args)) => cmd::reset::drop(&connection, &args).await,
        Command::Book(args) => cmd::book::run(&connection, &args).await,
        Command::Stress(args) => {
            cmd::stress::run(&connection, &args, cli.verbose, cli.threads).await
        }
        Command::Bench(BenchCommand::Lock(args)) => cmd::bench::run(&connection, &args).await,
        Command::Interleave(args) => cmd::interleave::run(&connection, &args).await,
        Command::Serve(args) => cmd::serve::run(&connection, &args).await,
        Command::Strategies(_) | Command::Completions { .. } | Command::Man | Command::Race(_) => {
            unreachable!("answered above, without a connection")
        }
    }
}

/// Puts an [`InputError`] at the top of the chain (where [`Exit::for_error`] finds it) instead
/// of behind a transparent wrapper.
pub(crate) fn surface_booking(error: BookingError) -> anyhow::Error {
    match error {
        BookingError::Input(input) => anyhow::Error::new(input),
        other => anyhow::Error::new(other),
    }
}

pub(crate) fn surface_db(error: DbError) -> anyhow::Error {
    match error {
        DbError::Input(input) => anyhow::Error::new(input),
        other => anyhow::Error::new(other),
    }
}
