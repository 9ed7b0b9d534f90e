//! What the user reads, one file (or folder) per format, written to any `impl Write` so tests
//! can capture them: [`text`] (tables and lines, one file per command), [`json`] (every
//! `--json` document), [`junit`] (one writer for `stress` and `race`), [`markdown`] (a CI job
//! summary), [`html`] (`--report`), [`timeline`] (`--timeline`, `--trace`).
//!
//! Nothing here decides anything: verdicts, whether a run met its expectation and whether the
//! runs did together come from [`crate::run`] (`verdict`, `judge`) and [`crate::race::judge`];
//! the exit status is the command's. A new output format is a file here.

pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod text;
pub mod timeline;

use std::collections::BTreeMap;
use std::io::{self, Write};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};
use serde::Serialize;

use crate::config::BookConfig;
use crate::domain::Outcome;
use crate::lock::{LockPolicy, LockStats};
use crate::metrics::{Latencies, Percentiles};
use crate::repo::NightState;
use crate::run::verdict;
use crate::run::{ProcessRow, StressConfig, StressReport, Tally, Verdict};
use crate::strategy::{Expectation, Mode, Needs, Shows};

/// Nights listed in the final-state table before the rest is summarised (all are in `--json`).
const MAX_NIGHT_ROWS: usize = 24;

fn table(header: Vec<&str>) -> Table {
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

/// `p50 1.2  p95 3.4  p99 5.6  max 7.8`: the percentiles of a latency line, in ms.
fn percentiles(latency: &Latencies) -> String {
    let l = latency.summary();
    format!(
        "p50 {}  p95 {}  p99 {}  max {}",
        ms(l.p50_ms),
        ms(l.p95_ms),
        ms(l.p99_ms),
        ms(l.max_ms)
    )
}

fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The room types a run spreads over (`--room`, `--rooms`), as the headlines name them.
fn room_types(c: &StressConfig) -> String {
    if c.rooms > 1 {
        format!("rooms {}-{}", c.room, c.room.get() + c.rooms as i32 - 1)
    } else {
        format!("room {}", c.room)
    }
}

/// The race of a comparison, as its headline, the Markdown summary and the HTML report say it:
/// `20 users on room 1, 2024-12-25 → 2024-12-26 (1 night), inventory 1, hold 200 ms`.
pub(crate) fn race_summary(c: &StressConfig) -> String {
    format!(
        "{} users on {}, {}{}, inventory {}, hold {} ms",
        c.users,
        room_types(c),
        c.stay,
        if c.mixed_ranges { ", mixed ranges" } else { "" },
        c.inventory,
        c.hold.as_millis()
    )
}

fn expectation_word(expect: Expectation) -> &'static str {
    match expect {
        Expectation::Overbooking => "overbooking",
        Expectation::Safe => "safe",
        Expectation::Any => "any",
    }
}

/// (Σ booked_count, Σ confirmed rows) over every night.
fn totals(nights: &[NightState]) -> (i64, i64) {
    nights.iter().fold((0, 0), |(b, c), n| {
        (b + i64::from(n.booked_count), c + n.confirmed_bookings)
    })
}

/// One JSON document and a newline.
pub fn write_json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}
