//! `stress --timeline` and `--trace`: the race drawn per user, in the terminal and as Chrome
//! Trace Event JSON.

use std::io::{self, Write};

use serde_json::{Value, json};

use crate::timeline::{self, Track};

/// Lanes drawn at most; above that, an even sample (saying so).
const MAX_LANES: usize = 40;
/// Columns of the time axis: with the label and the status, a lane fits 80 columns.
const CELLS: usize = 64;

const LEGEND: &str =
    ". begin  L lock wait  c check  ~ slow work  w write  C commit  x refused  ! overbooked";

/// ANSI colour of a glyph (only on a terminal, never with NO_COLOR: the caller decides).
fn paint(glyph: char, colour: bool) -> String {
    if !colour {
        return glyph.to_string();
    }
    let code = match glyph {
        'L' => "33",
        'c' => "36",
        '~' => "2",
        'w' => "35",
        'C' => "32",
        'x' | '!' => "1;31",
        _ => return glyph.to_string(),
    };
    format!("\x1b[{code}m{glyph}\x1b[0m")
}

/// One lane per user on a shared time axis, from the start of the race to its last end.
pub fn write_timeline(
    out: &mut impl Write,
    tracks: &[Track],
    inventory: i32,
    colour: bool,
) -> io::Result<()> {
    if tracks.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<&Track> = tracks.iter().collect();
    sorted.sort_by_key(|t| (t.start_us, t.end_us));
    let shown: Vec<&Track> = if sorted.len() > MAX_LANES {
        (0..MAX_LANES)
            .map(|i| sorted[i * sorted.len() / MAX_LANES])
            .collect()
    } else {
        sorted.clone()
    };
    let span = timeline::span(tracks).as_micros().max(1) as u64;
    let cell = span.div_ceil(CELLS as u64).max(1);
    let column = |us: u64| usize::try_from(us / cell).unwrap_or(CELLS).min(CELLS - 1);
    writeln!(
        out,
        "Timeline: {} user{}{}, 0 → {:.1} ms, one column = {:.2} ms (phases measured at the strategy's step boundaries)",
        tracks.len(),
        if tracks.len() == 1 { "" } else { "s" },
        if shown.len() < tracks.len() {
            format!(", {} lanes shown (an even sample)", shown.len())
        } else {
            String::new()
        },
        span as f64 / 1000.0,
        cell as f64 / 1000.0
    )?;
    for track in &shown {
        let mut cells = vec![' '; CELLS];
        for (c, slot) in cells.iter_mut().enumerate() {
            let middle = c as u64 * cell + cell / 2;
            if let Some(phase) = track
                .phases
                .iter()
                .find(|p| p.start_us <= middle && middle < p.end_us)
            {
                *slot = timeline::glyph(phase.name);
            }
        }
        // Every phase but `begin` shows, however short: a phase shorter than a column takes
        // the column it starts in, unless another short phase already did.
        let mut placed = [false; CELLS];
        for phase in track.phases.iter().filter(|p| p.name != "begin") {
            let c = column(phase.start_us);
            let short = phase.end_us - phase.start_us < cell;
            if (short && !placed[c]) || cells[c] == ' ' || cells[c] == '.' {
                cells[c] = timeline::glyph(phase.name);
                placed[c] |= short;
            }
        }
        if track.outcome != "created" {
            cells[column(track.end_us.saturating_sub(1))] = 'x';
        }
        let lane: String = cells.iter().map(|&g| paint(g, colour)).collect();
        let id = track.user.to_string();
        writeln!(
            out,
            "{:<8} │{lane}│ {}",
            &id[..8.min(id.len())],
            track.status
        )?;
    }
    let mut axis = vec!['─'; CELLS];
    let marker = timeline::overbooked_at(tracks, inventory).map(|at| column(at.saturating_sub(1)));
    if let Some(c) = marker {
        axis[c] = '!';
    }
    let axis: String = axis.iter().map(|&g| paint(g, colour && g == '!')).collect();
    writeln!(out, "{:<8} └{axis}┘", "")?;
    let end = format!("{:.0} ms", span as f64 / 1000.0);
    writeln!(out, "{:<9}0 ms{end:>width$}", "", width = CELLS - 2)?;
    if let Some(c) = marker {
        writeln!(
            out,
            "! at {:.1} ms: the first commit beyond the inventory of {inventory} — the slot became overbooked",
            (c as u64 * cell) as f64 / 1000.0
        )?;
    }
    writeln!(out, "{LEGEND}")
}

/// One process per strategy, one track per user (named by its short id, sorted by start), one
/// complete event per phase, and a counter of the bookings created as commits happen.
pub fn trace(runs: &[(String, &[Track])]) -> Value {
    let mut events = Vec::new();
    for (pid, (name, tracks)) in runs.iter().enumerate() {
        let pid = pid + 1;
        events.push(json!({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}}));
        let mut sorted: Vec<&Track> = tracks.iter().collect();
        sorted.sort_by_key(|t| (t.start_us, t.end_us));
        for (tid, track) in sorted.iter().enumerate() {
            let tid = tid + 1;
            let id = track.user.to_string();
            events.push(
                json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                "args": {"name": &id[..8.min(id.len())]}}),
            );
            events.push(
                json!({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                "args": {"sort_index": tid}}),
            );
            for phase in &track.phases {
                events.push(
                    json!({"name": phase.name, "cat": "booking", "ph": "X", "pid": pid,
                    "tid": tid, "ts": phase.start_us, "dur": phase.end_us - phase.start_us,
                    "args": {"user": id, "outcome": track.outcome, "status": track.status}}),
                );
            }
        }
        events.push(
            json!({"name": "booked_count", "ph": "C", "pid": pid, "tid": 0, "ts": 0,
            "args": {"created": 0}}),
        );
        for (at, created) in timeline::created_over_time(tracks) {
            events.push(
                json!({"name": "booked_count", "ph": "C", "pid": pid, "tid": 0,
                "ts": at, "args": {"created": created}}),
            );
        }
    }
    json!({"traceEvents": events, "displayTimeUnit": "ms"})
}
