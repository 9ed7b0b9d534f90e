//! GitHub-flavoured Markdown, for a CI job's summary: `stress --markdown` (the comparison) and
//! `race --markdown` (the runs).

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::race::judge::{self, Race};
use crate::run::StressReport;

use super::text::race::{expect_word, headline, interrupted_line};
use super::{expectation_word, totals};

fn expected(r: &StressReport) -> &'static str {
    expectation_word(r.config.expect)
}

/// The comparison as one GitHub-flavoured Markdown table, and a line saying whether every
/// strategy met its expectation.
pub fn write_stress(out: &mut impl Write, reports: &[StressReport]) -> io::Result<()> {
    let mut doc = String::new();
    if let Some(first) = reports.first() {
        let _ = writeln!(
            doc,
            "**booking-cli stress**: {} — verdicts read from PostgreSQL\n",
            super::race_summary(&first.config)
        );
    }
    doc.push_str("| strategy | created | refused | errors | booked_count | confirmed | verdict | p50 ms | p95 ms | expected |\n");
    doc.push_str("|---|---:|---:|---:|---:|---:|---|---:|---:|---|\n");
    for r in reports {
        let (booked, confirmed) = totals(&r.nights);
        let l = r.latency.summary();
        let _ = writeln!(
            doc,
            "| `{}` | {} | {} | {} | {booked} | {confirmed} | {} | {:.1} | {:.1} | {} {} |",
            r.config.mode,
            r.tally.successes(),
            r.tally.refused(),
            r.tally.error_count(),
            r.verdict(),
            l.p50_ms,
            l.p95_ms,
            expected(r),
            if r.expectation_met() {
                "✅"
            } else {
                "❌ not met"
            }
        );
    }
    let missed: Vec<String> = reports
        .iter()
        .filter(|r| !r.expectation_met())
        .map(|r| format!("`{}`", r.config.mode))
        .collect();
    if missed.is_empty() {
        doc.push_str("\nEvery run met its expectation.\n");
    } else {
        let _ = writeln!(doc, "\nExpectation not met: {}.", missed.join(", "));
    }
    out.write_all(doc.as_bytes())
}

/// The runs as one GitHub-flavoured Markdown table.
pub fn write_race(out: &mut impl Write, race: &Race<'_>) -> io::Result<()> {
    let (settings, runs, interrupted) = (race.settings, race.runs, race.interrupted);
    let mut doc = format!(
        "**booking-cli {}** — judged by {}\n\n",
        headline(settings).trim_start_matches("race: "),
        judge::judged_by(settings).join("; ")
    );
    doc.push_str("| run | successes | no answer / 5xx | written | violating rows | verdict |\n|---:|---:|---:|---:|---:|---|\n");
    for run in runs {
        let _ = writeln!(
            doc,
            "| {} | {} | {} | {} | {} | {} |",
            run.run,
            run.successes,
            run.indeterminate(),
            run.counted.map_or("-".to_owned(), |c| c.to_string()),
            run.check_rows.iter().sum::<usize>(),
            run.verdict()
        );
    }
    if settings.several() {
        let mut all = crate::sync::HttpStats::default();
        for run in runs {
            all.merge(&run.http);
        }
        doc.push_str("\n| request | sent | successes | refused | no answer / 5xx | p50 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for request in &all.by_request {
            let (p50, max) = request.latency_ms().unwrap_or_default();
            let _ = writeln!(
                doc,
                "| `{}` | {} | {} | {} | {} | {p50:.1} | {max:.1} |",
                request.name, request.sent, request.successes, request.refused, request.errors
            );
        }
    }
    let _ = writeln!(
        doc,
        "\nExpected {}: {}",
        expect_word(settings.expect),
        if judge::met(runs, settings) && !interrupted {
            "✅ met"
        } else {
            "❌ not met"
        }
    );
    if let Some((run, why)) = runs
        .iter()
        .find_map(|r| r.caveat(settings).map(|why| (r.run, why)))
    {
        let _ = writeln!(doc, "\nRun {run}: {why}");
    }
    if interrupted {
        let _ = writeln!(doc, "\n**{}**", interrupted_line(settings, runs));
    }
    out.write_all(doc.as_bytes())
}
