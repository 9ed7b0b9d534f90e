//! `book`: one booking, through the same strategy code every other front door runs.

use std::io::Write;

use anyhow::Context as _;

use crate::cli::BookArgs;
use crate::config::BookConfig;
use crate::config::Connection;
use crate::domain::Outcome;
use crate::exit::{Exit, surface_booking};
use crate::report;
use crate::stop::Stop;
use crate::strategy;

use super::{connect_lock, connect_redlock, connect_repo, finish_output};

pub async fn run(connection: &Connection, args: &BookArgs) -> anyhow::Result<Exit> {
    let config = BookConfig::from_args(args)?;
    let repo = connect_repo(connection, 2).await?;
    // Validate against the hotel before touching Redis or writing anything.
    repo.ensure_bookable(config.request.room, &config.request.stay)
        .await
        .map_err(surface_booking)?;
    let lock = connect_lock(connection, config.mode.needs_redis()).await?;
    let strategy = strategy::build(
        config.mode,
        strategy::Context {
            repo: repo.clone(),
            lock,
            redlock: connect_redlock(connection, config.mode.needs_redlock()).await?,
            tuning: config.tuning,
            stop: Stop::new(),
        },
    )?;
    if !config.mode.spec().slow_work && !config.tuning.hold.is_zero() {
        eprintln!(
            "note: --hold-ms {} is not applied: {} books in one statement, with no place for slow work (--mode reserve runs it outside any lock)",
            config.tuning.hold.as_millis(),
            config.mode
        );
    }
    let outcome = strategy
        .book(&config.request)
        .await
        .map_err(surface_booking)
        .context("booking failed")?;
    let mut out = std::io::stdout().lock();
    let printed = if config.json {
        report::write_json(&mut out, &report::json::BookJson::new(&config, &outcome))
    } else {
        report::text::book::write_book(&mut out, &config, &outcome)
    };
    finish_output(printed.and_then(|()| out.flush()))?;
    // Booked is 0; every refusal — sold out, a busy lock, a payment — is 3 (the 409 of the
    // reference API); an interrupted booking wrote nothing.
    Ok(match outcome {
        Outcome::Interrupted => Exit::Interrupted,
        booked if booked.is_success() => Exit::Success,
        _ => Exit::Unexpected,
    })
}
