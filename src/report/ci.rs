//! What CI systems read natively: `stress --junit FILE` (JUnit XML, one test case per
//! strategy, or per run with `--repeat`, failing when its expectation did not hold) and
//! `stress --markdown` (the comparison as a GitHub-flavoured Markdown table, for a job summary).

use std::fmt::Write as _;
use std::io::{self, Write};

use super::{expectation_word, totals};
use crate::run::StressReport;

pub(crate) fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The figures a failure or a row carries: outcomes and the database's final state.
fn figures(r: &StressReport) -> String {
    let t = &r.tally;
    let (booked, confirmed) = totals(&r.nights);
    format!(
        "{} users: {} created, {} refused, {} errors; booked_count {booked}, confirmed bookings {confirmed}, inventory {} (read from PostgreSQL)",
        r.config.users,
        t.successes(),
        t.refused(),
        t.error_count(),
        r.config.inventory
    )
}

fn expected(r: &StressReport) -> &'static str {
    expectation_word(r.config.expect)
}

/// JUnit XML: one suite, one case per report (`--repeat`: the run number in the name).
pub fn write_junit(out: &mut impl Write, reports: &[StressReport], repeat: u32) -> io::Result<()> {
    let met = super::runs_met(reports, repeat);
    let failures = met.iter().filter(|met| !**met).count();
    let time: f64 = reports.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let mut doc = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        doc,
        "<testsuites name=\"booking-cli stress\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">",
        reports.len()
    );
    let _ = writeln!(
        doc,
        "  <testsuite name=\"booking-cli stress\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{time:.3}\">",
        reports.len()
    );
    for (i, r) in reports.iter().enumerate() {
        let name = if repeat > 1 {
            format!("{} run {}", r.config.mode, i % repeat as usize + 1)
        } else {
            r.config.mode.to_string()
        };
        let _ = write!(
            doc,
            "    <testcase classname=\"booking-cli.stress\" name=\"{}\" time=\"{:.3}\"",
            xml(&name),
            r.elapsed.as_secs_f64()
        );
        if met.get(i).copied().unwrap_or(false) {
            doc.push_str("/>\n");
        } else {
            let _ = writeln!(
                doc,
                ">\n      <failure type=\"expectation\" message=\"expected {}, the database shows {}\">{}</failure>\n    </testcase>",
                expected(r),
                xml(&r.verdict()),
                xml(&figures(r))
            );
        }
    }
    doc.push_str("  </testsuite>\n</testsuites>\n");
    out.write_all(doc.as_bytes())
}

/// The comparison as one GitHub-flavoured Markdown table, and a line saying whether every
/// strategy met its expectation.
pub fn write_markdown(out: &mut impl Write, reports: &[StressReport]) -> io::Result<()> {
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
