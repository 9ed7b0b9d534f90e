//! What the user reads: tables and JSON, written to any `impl Write` so tests can capture them.
//! Nothing here decides anything; verdicts come from [`StressReport`].

use std::collections::BTreeMap;
use std::io::{self, Write};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};
use serde::Serialize;

use crate::config::BookConfig;
use crate::domain::Outcome;
use crate::lock::LockStats;
use crate::repo::NightState;
use crate::strategy::{Expectation, Mode};
use crate::stress::StressReport;

fn table(header: Vec<String>) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    for column in table.column_iter_mut().skip(1) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    table
}

/// The outcome table, then the final state read from the database, then the verdict line.
pub fn write_stress(out: &mut impl Write, report: &StressReport) -> io::Result<()> {
    let c = &report.config;
    writeln!(
        out,
        "stress --mode {}: {} users on room {}, {}, inventory {}, hold {} ms",
        c.mode,
        c.users,
        c.room,
        c.stay,
        c.inventory,
        c.hold.as_millis()
    )?;

    let t = &report.tally;
    let mut outcomes = table(vec!["Outcome".into(), "Users".into()]);
    outcomes.add_row(vec!["201 Created".to_owned(), t.created.to_string()]);
    outcomes.add_row(vec![
        "409 Conflict (sold out)".to_owned(),
        t.sold_out.to_string(),
    ]);
    outcomes.add_row(vec![
        "409 Conflict (lock not acquired)".to_owned(),
        t.lock_not_acquired.to_string(),
    ]);
    if t.errors.is_empty() {
        outcomes.add_row(vec!["500 Error".to_owned(), "0".to_owned()]);
    }
    for (message, count) in &t.errors {
        outcomes.add_row(vec![format!("500 Error: {message}"), count.to_string()]);
    }
    writeln!(out, "{outcomes}")?;

    let mut header = vec!["Final state (read from PostgreSQL)".to_owned()];
    header.extend(report.nights.iter().map(|n| n.night.to_string()));
    let mut state = table(header);
    let row = |label: &str, value: &dyn Fn(&NightState) -> String| {
        let mut cells = vec![label.to_owned()];
        cells.extend(report.nights.iter().map(value));
        cells
    };
    state.add_row(row("total_inventory", &|n| n.total_inventory.to_string()));
    state.add_row(row("booked_count", &|n| n.booked_count.to_string()));
    state.add_row(row("confirmed bookings", &|n| {
        n.confirmed_bookings.to_string()
    }));
    state.add_row(row("verdict", &|n| {
        if n.overbooked() { "OVERBOOKED" } else { "SAFE" }.to_owned()
    }));
    writeln!(out, "{state}")?;

    if let Some(lock) = &report.lock
        && lock.locks_expired_before_release > 0
    {
        writeln!(
            out,
            "warning: {} lock(s) expired before their holder released them (--lock-ttl-ms {} is too short for the work)",
            lock.locks_expired_before_release,
            c.lock_policy.ttl.as_millis()
        )?;
    }
    writeln!(
        out,
        "Verdict: {} in {} ms — expected {}: {}",
        report.verdict(),
        report.elapsed.as_millis(),
        expectation_word(c.expect),
        if report.expectation_met() {
            "met"
        } else {
            "NOT met"
        }
    )
}

fn expectation_word(expect: Expectation) -> &'static str {
    match expect {
        Expectation::Overbooking => "overbooking",
        Expectation::Safe => "safe",
    }
}

/// The `stress --json` document.
#[derive(Debug, Serialize)]
pub struct StressJson<'a> {
    pub mode: Mode,
    pub users: u32,
    pub inventory: i32,
    pub room: i32,
    pub from: String,
    pub to: String,
    pub hold_ms: u128,
    pub created: u32,
    pub conflicts_sold_out: u32,
    pub conflicts_lock: u32,
    pub errors: u32,
    pub error_messages: &'a BTreeMap<String, u32>,
    /// The headline night: the first overbooked night of the slot, else its first night.
    pub total_inventory: i32,
    pub booked_count: i32,
    pub confirmed_bookings: i64,
    pub overbooked: bool,
    pub verdict: &'static str,
    pub expected: Expectation,
    pub expectation_met: bool,
    pub elapsed_ms: u128,
    pub cleared_bookings: u64,
    /// Every night of the slot.
    pub nights: &'a [NightState],
    #[serde(flatten)]
    pub lock_policy: Option<crate::lock::LockPolicy>,
    /// Lock counters, for strategies that take a lock.
    pub lock: Option<LockStats>,
}

impl<'a> StressJson<'a> {
    pub fn new(report: &'a StressReport) -> Self {
        let c = &report.config;
        let headline = report.headline_night().copied().unwrap_or(NightState {
            night: c.stay.from(),
            total_inventory: 0,
            booked_count: 0,
            confirmed_bookings: 0,
        });
        Self {
            mode: c.mode,
            users: c.users,
            inventory: c.inventory,
            room: c.room.get(),
            from: c.stay.from().to_string(),
            to: c.stay.to().to_string(),
            hold_ms: c.hold.as_millis(),
            created: report.tally.created,
            conflicts_sold_out: report.tally.sold_out,
            conflicts_lock: report.tally.lock_not_acquired,
            errors: report.tally.error_count(),
            error_messages: &report.tally.errors,
            total_inventory: headline.total_inventory,
            booked_count: headline.booked_count,
            confirmed_bookings: headline.confirmed_bookings,
            overbooked: report.overbooked(),
            verdict: report.verdict(),
            expected: c.expect,
            expectation_met: report.expectation_met(),
            elapsed_ms: report.elapsed.as_millis(),
            cleared_bookings: report.cleared_bookings,
            nights: &report.nights,
            lock_policy: c.mode.needs_redis().then_some(c.lock_policy),
            lock: report.lock,
        }
    }
}

/// One JSON document and a newline.
pub fn write_json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

/// The `book --json` document.
#[derive(Debug, Serialize)]
pub struct BookJson {
    pub status: u16,
    pub outcome: &'static str,
    pub booking_id: Option<i64>,
    pub sold_out_night: Option<String>,
    pub lock_key: Option<String>,
    pub user: String,
    pub room: i32,
    pub from: String,
    pub to: String,
    pub mode: Mode,
}

impl BookJson {
    pub fn new(config: &BookConfig, outcome: &Outcome) -> Self {
        let r = &config.request;
        let (name, booking_id, sold_out_night, lock_key) = match outcome {
            Outcome::Created { booking_id } => ("created", Some(*booking_id), None, None),
            Outcome::SoldOut { night } => ("sold_out", None, Some(night.to_string()), None),
            Outcome::LockNotAcquired { key, .. } => {
                ("lock_not_acquired", None, None, Some(key.clone()))
            }
        };
        Self {
            status: outcome.status(),
            outcome: name,
            booking_id,
            sold_out_night,
            lock_key,
            user: r.user.to_string(),
            room: r.room.get(),
            from: r.stay.from().to_string(),
            to: r.stay.to().to_string(),
            mode: config.mode,
        }
    }
}

/// One line: the status, and the booking id or the reason.
pub fn write_book(out: &mut impl Write, config: &BookConfig, outcome: &Outcome) -> io::Result<()> {
    let r = &config.request;
    match outcome {
        Outcome::Created { booking_id } => writeln!(
            out,
            "201 Created: booking {booking_id} for user {} in room {}, {} ({})",
            r.user, r.room, r.stay, config.mode
        ),
        Outcome::SoldOut { night } => writeln!(
            out,
            "409 Conflict (sold out): room {} has no room left on {night} ({})",
            r.room, config.mode
        ),
        Outcome::LockNotAcquired { key, attempts } => writeln!(
            out,
            "409 Conflict (lock not acquired): {key} stayed held by another booking for {attempts} attempts ({})",
            config.mode
        ),
    }
}
