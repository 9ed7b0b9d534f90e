//! The documented exit statuses, and how an outcome or an error maps to one: a leaf every
//! command and `main` read, so that no command imports the dispatcher that calls it.

use std::process::ExitCode;

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
