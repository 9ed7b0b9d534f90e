//! JUnit XML, the report every CI system reads: one writer ([`write`]) for `stress --junit`
//! (one case per strategy, or per run with `--repeat`) and `race --junit` (one case per run,
//! and one in error when the race was interrupted). A case fails when its run did not meet the
//! expectation — as [`crate::run::verdict::each_met`] decides, not this file.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::race::RaceSettings;
use crate::race::judge::{Race, RaceRun};
use crate::run::StressReport;

use super::text::race::{expect_word, interrupted_line};
use super::{expectation_word, totals};

/// One suite: a command's cases.
pub struct Suite {
    /// `booking-cli stress`, `booking-cli race`.
    pub name: String,
    /// `booking-cli.stress`, `booking-cli.race`.
    pub classname: String,
    pub cases: Vec<Case>,
}

/// One test case.
pub struct Case {
    pub name: String,
    pub seconds: f64,
    pub outcome: CaseOutcome,
    /// The case's figures, shown whatever its outcome (`<system-out>`).
    pub output: Option<String>,
}

/// How a case ended.
pub enum CaseOutcome {
    Passed,
    /// The expectation was not met: `message` in one line, `details` the figures.
    Failed {
        message: String,
        details: String,
    },
    /// The case could not be run to its end (an interrupted race).
    Error {
        kind: String,
        message: String,
        details: String,
    },
}

/// The suite as a JUnit XML document.
pub fn write(out: &mut impl Write, suite: &Suite) -> io::Result<()> {
    let failures = suite
        .cases
        .iter()
        .filter(|c| matches!(c.outcome, CaseOutcome::Failed { .. }))
        .count();
    let errors = suite
        .cases
        .iter()
        .filter(|c| matches!(c.outcome, CaseOutcome::Error { .. }))
        .count();
    let tests = suite.cases.len();
    let time: f64 = suite.cases.iter().map(|c| c.seconds).sum();
    let name = xml(&suite.name);
    let mut doc = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        doc,
        "<testsuites name=\"{name}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">\n  <testsuite name=\"{name}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{time:.3}\">"
    );
    for case in &suite.cases {
        let _ = write!(
            doc,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            xml(&suite.classname),
            xml(&case.name),
            case.seconds
        );
        if matches!(case.outcome, CaseOutcome::Passed) && case.output.is_none() {
            doc.push_str("/>\n");
            continue;
        }
        doc.push_str(">\n");
        match &case.outcome {
            CaseOutcome::Passed => {}
            CaseOutcome::Failed { message, details } => {
                let _ = writeln!(
                    doc,
                    "      <failure type=\"expectation\" message=\"{}\">{}</failure>",
                    xml(message),
                    xml(details)
                );
            }
            CaseOutcome::Error {
                kind,
                message,
                details,
            } => {
                let _ = writeln!(
                    doc,
                    "      <error type=\"{}\" message=\"{}\">{}</error>",
                    xml(kind),
                    xml(message),
                    xml(details)
                );
            }
        }
        if let Some(output) = &case.output {
            let _ = writeln!(doc, "      <system-out>{}</system-out>", xml(output));
        }
        doc.push_str("    </testcase>\n");
    }
    doc.push_str("  </testsuite>\n</testsuites>\n");
    out.write_all(doc.as_bytes())
}

pub(crate) fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The figures a failure or a row carries: outcomes and the database's final state.
pub(crate) fn figures(r: &StressReport) -> String {
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

/// `stress --junit`: one case per report (`--repeat`: the run number in the name).
pub fn write_stress(out: &mut impl Write, reports: &[StressReport], repeat: u32) -> io::Result<()> {
    let met = crate::run::runs_met(reports, repeat);
    let cases = reports
        .iter()
        .enumerate()
        .map(|(i, r)| Case {
            name: if repeat > 1 {
                format!("{} run {}", r.config.mode, i % repeat as usize + 1)
            } else {
                r.config.mode.to_string()
            },
            seconds: r.elapsed.as_secs_f64(),
            outcome: if met.get(i).copied().unwrap_or(false) {
                CaseOutcome::Passed
            } else {
                CaseOutcome::Failed {
                    message: format!(
                        "expected {}, the database shows {}",
                        expectation_word(r.config.expect),
                        r.verdict()
                    ),
                    details: figures(r),
                }
            },
            output: None,
        })
        .collect();
    write(
        out,
        &Suite {
            name: "booking-cli stress".to_owned(),
            classname: "booking-cli.stress".to_owned(),
            cases,
        },
    )
}

/// `race --junit`: one case per run, failing when the run did not meet the expectation (with
/// `--expect violated`, no case fails while one run violated), and one case in error when the
/// race was interrupted, so that a CI reading the file sees it is not the whole run.
pub fn write_race(out: &mut impl Write, race: &Race<'_>) -> io::Result<()> {
    let (settings, runs, interrupted) = (race.settings, race.runs, race.interrupted);
    let each: Vec<bool> = runs.iter().map(|r| r.expectation_met(settings)).collect();
    let met = crate::run::verdict::each_met(settings.expect, &each);
    let mut cases: Vec<Case> = runs
        .iter()
        .zip(met)
        .map(|(run, met)| Case {
            name: format!("run {}", run.run),
            seconds: run.elapsed.as_secs_f64(),
            outcome: if met {
                CaseOutcome::Passed
            } else {
                CaseOutcome::Failed {
                    message: format!(
                        "expected {}, the run shows {}",
                        expect_word(settings.expect),
                        run.verdict()
                    ),
                    details: race_figures(settings, run),
                }
            },
            output: Some(race_figures(settings, run)),
        })
        .collect();
    if interrupted {
        cases.push(Case {
            name: "interrupted".to_owned(),
            seconds: 0.0,
            outcome: CaseOutcome::Error {
                kind: "interrupted".to_owned(),
                message: "interrupted (Ctrl-C or SIGTERM)".to_owned(),
                details: interrupted_line(settings, runs),
            },
            output: None,
        });
    }
    write(
        out,
        &Suite {
            name: settings.name.clone(),
            classname: "booking-cli.race".to_owned(),
            cases,
        },
    )
}

fn race_figures(settings: &RaceSettings, run: &RaceRun) -> String {
    let mut figures = format!(
        "{} successes, {} violating row(s), counted {}, {} without an answer or with a 5xx",
        run.successes,
        run.check_rows.iter().sum::<usize>(),
        run.counted.map_or("-".to_owned(), |c| c.to_string()),
        run.indeterminate()
    );
    if let Some(why) = run.caveat(settings) {
        figures.push_str(": ");
        figures.push_str(&why);
    }
    if let Some(one_by_one) = run.baseline {
        let _ = write!(
            figures,
            "; {} succeeded one by one (--baseline sequential)",
            one_by_one.successes
        );
    }
    let _ = write!(
        figures,
        "; judged by {}",
        crate::race::judge::judged_by(settings).join("; ")
    );
    // Per request of a burst with several: which of them got through.
    if settings.several() {
        for request in &run.http.by_request {
            let _ = write!(
                figures,
                "; {}: {} sent, {} succeeded, {} refused, {} without an answer or with a 5xx",
                request.name, request.sent, request.successes, request.refused, request.errors
            );
        }
    }
    figures
}
