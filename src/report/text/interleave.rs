//! `interleave`'s output: transcripts in the manner of PostgreSQL's isolation tester, a
//! summary per strategy, and the matrix of `--mode all`.

use std::io::{self, Write};

use super::{expectation_word, table};
use crate::interleave::{Line, SlotState, Summary, Transcript};

/// Where the state column of a transcript starts.
const STATE_COLUMN: usize = 48;

fn state(state: &SlotState) -> String {
    format!(
        "booked_count {}/{} · confirmed {}",
        state.booked_count, state.total_inventory, state.confirmed_bookings
    )
}

/// One ordering, step by step: each step as it starts, `<waiting ...>` where it blocked and
/// on what, `<... completed>` where it resumed, each user's outcome, and the slot as committed
/// after every step.
pub fn write_transcript(out: &mut impl Write, transcript: &Transcript) -> io::Result<()> {
    writeln!(out, "permutation {}", transcript.schedule)?;
    for line in &transcript.lines {
        match line {
            Line::Step {
                entry,
                waiting,
                after,
                state: after_step,
            } => {
                let mut left = format!("step {entry}");
                if *after {
                    left.push_str(" (after the schedule)");
                }
                if waiting.is_some() {
                    left.push_str(": <waiting ...>");
                }
                match after_step {
                    Some(s) if left.chars().count() < STATE_COLUMN => {
                        writeln!(out, "{left:<STATE_COLUMN$}{}", state(s))?
                    }
                    Some(s) => writeln!(out, "{left}  {}", state(s))?,
                    None => writeln!(out, "{left}")?,
                }
                if let Some(what) = waiting {
                    writeln!(out, "    waits for {what}")?;
                }
            }
            Line::Completed { entry } => writeln!(out, "step {entry}: <... completed>")?,
            Line::Skipped { entry } => {
                writeln!(out, "step {entry}: skipped (the booking did not reach it)")?
            }
            Line::Aborted { user, reason } => {
                writeln!(out, "{user}: aborted by PostgreSQL ({reason}); starts over")?
            }
            Line::Outcome { user, status } => writeln!(out, "{user}: {status}")?,
        }
    }
    match &transcript.state {
        Some(s) => writeln!(out, "final: {} → {}", state(s), transcript.verdict),
        None => writeln!(out, "final: {}", transcript.verdict),
    }
}

/// One strategy's orderings: the counts, the expectation, and the transcript worth seeing.
pub fn write_summary(out: &mut impl Write, summary: &Summary, slot: &str) -> io::Result<()> {
    let users: Vec<&str> = summary.steps.keys().map(String::as_str).collect();
    writeln!(
        out,
        "interleave --mode {}: {} users ({}) on {slot}",
        summary.mode,
        summary.users,
        users.join(", ")
    )?;
    writeln!(
        out,
        "steps of each user: {}",
        summary.mode.steps().join(" → ")
    )?;
    writeln!(
        out,
        "{} {}: {} overbooked, {} lost update, {} under-sold, {} blocked, {} aborted, {} with errors",
        summary.orderings,
        if summary.orderings == 1 {
            "ordering"
        } else {
            "orderings"
        },
        summary.overbooked,
        summary.lost_update,
        summary.under_sold,
        summary.blocked,
        summary.aborted,
        summary.errors
    )?;
    writeln!(
        out,
        "expected: {} — {}",
        expectation_text(summary),
        if summary.met { "met" } else { "NOT met" }
    )?;
    if let Some(transcript) = &summary.transcript {
        writeln!(out)?;
        if summary.orderings > 1 {
            let which = if transcript.verdict.contains("OVERBOOKED") {
                "the first ordering that overbooked"
            } else {
                "the first ordering in which a step blocked"
            };
            writeln!(out, "{which}:")?;
        }
        write_transcript(out, transcript)?;
    }
    Ok(())
}

fn expectation_text(summary: &Summary) -> String {
    match summary.expected {
        crate::strategy::Expectation::Overbooking => "overbooking in some ordering".to_owned(),
        other => format!("{} in every ordering", expectation_word(other)),
    }
}

/// `--mode all`: one row per strategy.
pub fn write_matrix(out: &mut impl Write, summaries: &[Summary], slot: &str) -> io::Result<()> {
    let Some(first) = summaries.first() else {
        return Ok(());
    };
    writeln!(
        out,
        "interleave --mode all: {} users on {slot}, every ordering of their steps",
        first.users
    )?;
    let mut matrix = table(vec![
        "Strategy",
        "Steps",
        "Orderings",
        "Overbooked",
        "Lost update",
        "Under-sold",
        "Blocked",
        "Aborted",
        "Errors",
        "Expected",
    ]);
    if let Some(column) = matrix.column_mut(1) {
        column.set_cell_alignment(comfy_table::CellAlignment::Left);
    }
    if let Some(column) = matrix.column_mut(9) {
        column.set_cell_alignment(comfy_table::CellAlignment::Left);
    }
    for s in summaries {
        matrix.add_row(vec![
            s.mode.to_string(),
            s.mode.steps().join(" "),
            s.orderings.to_string(),
            s.overbooked.to_string(),
            s.lost_update.to_string(),
            s.under_sold.to_string(),
            s.blocked.to_string(),
            s.aborted.to_string(),
            s.errors.to_string(),
            format!(
                "{} {}",
                expectation_word(s.expected),
                if s.met { "✓" } else { "✗ NOT MET" }
            ),
        ]);
    }
    writeln!(out, "{matrix}")?;
    let missed: Vec<String> = summaries
        .iter()
        .filter(|s| !s.met)
        .map(|s| s.mode.to_string())
        .collect();
    if missed.is_empty() {
        writeln!(out, "every strategy met its expectation")
    } else {
        writeln!(out, "expectation NOT met: {}", missed.join(", "))
    }
}
