//! `stress --mode all` and `--repeat` as text: one row per strategy, and the verdicts counted
//! over the runs.

use super::stress::sparkline;
use super::*;
use crate::report::json::{Range, RepeatJson};
use crate::run::runs_met;

/// `stress --repeat N`: per strategy, how often each verdict occurred — read from the database
/// after every run — with the spread of what was created and how long it took.
pub fn write_repeated(out: &mut impl Write, groups: &[&[StressReport]]) -> io::Result<()> {
    let Some(first) = groups.first().and_then(|g| g.first()) else {
        return Ok(());
    };
    let c = &first.config;
    writeln!(
        out,
        "stress --repeat {}: {} users on {}, {}, inventory {}, each run on a freshly prepared slot",
        groups.iter().map(|g| g.len()).max().unwrap_or(0),
        c.users,
        room_types(c),
        c.stay,
        c.inventory
    )?;
    let mut rows = table(vec![
        "Strategy",
        "Verdicts (from the database)",
        "Expected",
        "Runs met",
        "Created min/median/max",
        "Elapsed ms min/median/max",
    ]);
    for runs in groups {
        let json = RepeatJson::new(runs);
        let verdicts: Vec<String> = json
            .verdict_counts
            .iter()
            .map(|(verdict, n)| format!("{verdict} {n}/{}", json.repeat))
            .collect();
        let spread = |s: Range| format!("{:.0}/{:.0}/{:.0}", s.min, s.median, s.max);
        rows.add_row(vec![
            json.mode.name().to_owned(),
            verdicts.join(", "),
            expectation_word(json.expected).to_owned(),
            format!(
                "{}/{} {}",
                json.expectation_met_runs,
                json.repeat,
                if json.expectation_met { "✓" } else { "✗" }
            ),
            spread(json.created),
            spread(json.elapsed_ms),
        ]);
    }
    writeln!(out, "{rows}")?;
    let missed: usize = groups
        .iter()
        .map(|g| {
            runs_met(g, g.len() as u32)
                .into_iter()
                .filter(|met| !met)
                .count()
        })
        .sum();
    if missed == 0 {
        writeln!(out, "Every run met its expectation.")
    } else {
        writeln!(out, "{missed} run(s) did NOT meet their expectation.")
    }
}

/// `--mode all`: one row per strategy.
pub fn write_comparison(out: &mut impl Write, reports: &[StressReport]) -> io::Result<()> {
    let Some(first) = reports.first() else {
        return Ok(());
    };
    let c = &first.config;
    writeln!(out, "stress --mode all: {}", race_summary(c))?;
    let mut comparison = table(vec![
        "Strategy",
        "Created",
        "Sold out",
        "Lock busy",
        "Retries exh.",
        "On hold",
        "Errors",
        "booked_count",
        "Confirmed",
        "Verdict",
        "Latency ms p50/p95/p99/max",
        "Elapsed ms",
        "Expected",
    ]);
    for column in [9, 12] {
        if let Some(column) = comparison.column_mut(column) {
            column.set_cell_alignment(CellAlignment::Left);
        }
    }
    for r in reports {
        let t = &r.tally;
        let (booked, confirmed) = totals(&r.nights);
        let l = r.latency.summary();
        comparison.add_row(vec![
            r.config.mode.to_string(),
            t.count("created").to_string(),
            t.count("sold_out").to_string(),
            t.lock_refusals().to_string(),
            t.count("retries_exhausted").to_string(),
            t.count("on_hold").to_string(),
            t.error_count().to_string(),
            booked.to_string(),
            confirmed.to_string(),
            r.verdict(),
            format!(
                "{}/{}/{}/{}",
                ms(l.p50_ms),
                ms(l.p95_ms),
                ms(l.p99_ms),
                ms(l.max_ms)
            ),
            r.elapsed.as_millis().to_string(),
            format!(
                "{} {}",
                expectation_word(r.config.expect),
                if r.expectation_met() {
                    "✓"
                } else {
                    "✗ NOT met"
                }
            ),
        ]);
    }
    writeln!(out, "{comparison}")?;
    writeln!(
        out,
        "booked_count and Confirmed are summed over every night of the slot, read from PostgreSQL."
    )?;
    // A closed loop has a long tail: bands up to the maximum would put nearly every booking in
    // the first one, so sustained runs are drawn up to p99, with the tail in a last band.
    let sustained = reports.iter().any(|r| r.config.duration.is_some());
    if sustained {
        writeln!(
            out,
            "Latency per booking, 0 → p99 in 23 bands, then the tail to the maximum:"
        )?;
    } else {
        writeln!(out, "Latency per user, 0 → max, 24 bins:")?;
    }
    for r in reports {
        let summary = r.latency.summary();
        let (bins, p99) = if sustained {
            (
                r.latency.bins_to_p99(23),
                format!("p99 {} / max ", ms(summary.p99_ms)),
            )
        } else {
            (r.latency.bins(24), String::new())
        };
        writeln!(
            out,
            "  {:<13}{} {p99}{} ms",
            r.config.mode.name(),
            sparkline(&bins),
            ms(summary.max_ms)
        )?;
    }
    let failed: Vec<_> = reports
        .iter()
        .filter(|r| !r.expectation_met())
        .map(|r| r.config.mode.name())
        .collect();
    if failed.is_empty() {
        writeln!(
            out,
            "All {} strategies met their expectation.",
            reports.len()
        )
    } else {
        writeln!(out, "Expectation NOT met by: {}", failed.join(", "))
    }
}
