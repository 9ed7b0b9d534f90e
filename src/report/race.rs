//! `race`'s outputs: the status codes and latency as `hey` and `oha` show them, the rows the
//! checks returned, the count beside the successes, and the verdict; `--json`, `--junit`,
//! `--markdown`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;

use super::{expectation_word, ms, table};
use crate::check_db::Violation;
use crate::race::RaceSettings;
use crate::race::judge::{self, RaceRun};
use crate::strategy::Expectation;
use crate::sync::Spread;

/// What the race did, in one line (the URL as a template: no `{{env:…}}` value shown).
pub fn headline(settings: &RaceSettings) -> String {
    let how = match settings.sync {
        crate::sync::Sync::SinglePacket => {
            "streams of HTTP/2 connections (as many each as the server's SETTINGS_MAX_CONCURRENT_STREAMS allows, at most 100), every final frame of a connection in one write"
        }
        crate::sync::Sync::LastByte => {
            "a connection each, all but the last byte sent before the start"
        }
        _ => "a connection each, released together",
    };
    format!(
        "race: {} {} — {} users, {how} (--sync {}); success: {}",
        settings.request.method,
        settings.request.url.display(),
        settings.users,
        settings.sync.name(),
        settings.success.display()
    )
}

/// How close together the burst left and arrived: the server's word when it sent one.
fn delivery_line(settings: &RaceSettings, run: &RaceRun) -> String {
    spread_line(
        settings.sync,
        run.writes,
        run.release.as_ref(),
        run.arrival.as_ref(),
    )
}

/// The spread of a burst's release (client side) and of its arrival (the server's
/// `Server-Timing`, when it sends one), as `race` and `stress --target --sync` print it.
/// `writes`: how many release writes succeeded (one per connection).
pub(crate) fn spread_line(
    sync: crate::sync::Sync,
    writes: usize,
    release: Option<&Spread>,
    arrival: Option<&Spread>,
) -> String {
    let spread = |s: &Spread| format!("{} µs (p50 gap {} µs)", s.max_us, s.p50_gap_us);
    let what = match sync {
        crate::sync::Sync::None => "requests written whole",
        _ => "final bytes written",
    };
    let released = match (release, writes) {
        (Some(s), _) => format!("{what} within {}", spread(s)),
        (None, 0) => "nothing was written at the release (every write failed)".to_owned(),
        (None, _) if sync == crate::sync::Sync::SinglePacket => {
            "final bytes written in one write".to_owned()
        }
        (None, _) => format!("{what}: one request"),
    };
    match arrival {
        Some(arrival) => format!(
            "Spread: {released}; arrived whole at the server within {}",
            spread(arrival)
        ),
        None => format!(
            "Spread: {released} (the server sends no Server-Timing: arrival, so its side is not known)"
        ),
    }
}

fn expect_word(expect: Expectation) -> &'static str {
    match expect {
        Expectation::Safe => "held",
        Expectation::Overbooking => "violated",
        Expectation::Any => expectation_word(expect),
    }
}

fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// The table of one run, or of `--repeat` runs; `interrupted`: Ctrl-C or SIGTERM ended the
/// runs early, and the one in progress was not judged.
pub fn write(
    out: &mut impl Write,
    settings: &RaceSettings,
    runs: &[RaceRun],
    interrupted: bool,
) -> io::Result<()> {
    writeln!(out, "{}", headline(settings))?;
    match runs {
        [] => {}
        [one] => write_one(out, settings, one, interrupted)?,
        all => write_repeated(out, settings, all, interrupted)?,
    }
    if interrupted {
        writeln!(out, "{}", interrupted_line(settings, runs))?;
    }
    Ok(())
}

/// What an interrupted race did and did not do.
pub fn interrupted_line(settings: &RaceSettings, runs: &[RaceRun]) -> String {
    format!(
        "INTERRUPTED: {} of {} run(s) finished and judged; the run in progress was not judged, and nothing here proves the invariant held",
        runs.len(),
        settings.repeat
    )
}

fn write_one(
    out: &mut impl Write,
    settings: &RaceSettings,
    run: &RaceRun,
    interrupted: bool,
) -> io::Result<()> {
    writeln!(out, "Status code distribution:")?;
    for (status, count) in &run.http.status_codes {
        let success = if settings.success.contains(*status) {
            "  (success)"
        } else {
            ""
        };
        writeln!(
            out,
            "  [{status}] {count} responses  {}{success}",
            reason(*status)
        )?;
    }
    writeln!(
        out,
        "No answer or 5xx: {} (no answer {}, 5xx {})",
        run.indeterminate(),
        run.http.transport_errors,
        run.indeterminate()
            .saturating_sub(u32::try_from(run.http.transport_errors).unwrap_or(u32::MAX))
    )?;
    for (message, count) in &run.tally.errors {
        writeln!(out, "  {count} × {message}")?;
    }
    let l = run.latency.summary();
    writeln!(
        out,
        "Latency (ms): p50 {}  p95 {}  p99 {}  max {}",
        ms(l.p50_ms),
        ms(l.p95_ms),
        ms(l.p99_ms),
        ms(l.max_ms)
    )?;
    writeln!(out, "{}", delivery_line(settings, run))?;
    if run.reopened > 0 {
        writeln!(out, "{}", reopened_line(run.reopened))?;
    }
    write_checks(out, settings, run)?;
    write_count(out, settings, run)?;
    writeln!(
        out,
        "Verdict: {} in {} ms — expected {}: {}{}",
        run.verdict(),
        run.elapsed.as_millis(),
        expect_word(settings.expect),
        met_word(run.expectation_met(settings) && !interrupted),
        run.caveat(settings)
            .map(|why| format!(" — {why}"))
            .unwrap_or_default()
    )
}

/// Connections the server closed before the release, reopened so the burst went out whole.
fn reopened_line(reopened: u32) -> String {
    format!(
        "Reopened: {reopened} connection(s) the server closed or reset before the release (a small accept backlog?) were opened again and pre-sent before the burst"
    )
}

fn met_word(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn write_checks(out: &mut impl Write, settings: &RaceSettings, run: &RaceRun) -> io::Result<()> {
    for (i, check) in settings.checks.iter().enumerate() {
        let total = run.check_rows.get(i).copied().unwrap_or(0);
        writeln!(
            out,
            "Check {} (read-only): {} → {total} row(s){}",
            i + 1,
            one_line(check),
            if total > 0 { " — VIOLATED" } else { "" }
        )?;
        let rows: Vec<&Violation> = run
            .violations
            .iter()
            .filter(|v| &v.check == check)
            .collect();
        write_rows(out, &rows)?;
        if total > rows.len() {
            writeln!(out, "  … {} more row(s)", total - rows.len())?;
        }
    }
    if let Some(max) = settings.max_successes {
        writeln!(
            out,
            "Successes: {} acknowledged, at most {max} allowed{}",
            run.successes,
            if u64::from(run.successes) > max {
                " — VIOLATED"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}

/// The rows of one check as a table with their own columns.
fn write_rows(out: &mut impl Write, rows: &[&Violation]) -> io::Result<()> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let columns: Vec<&str> = first.row.columns().collect();
    let mut t = table(columns.clone());
    for row in rows {
        t.add_row(
            columns
                .iter()
                .map(|c| cell(row.row.get(c).unwrap_or(&Value::Null)))
                .collect::<Vec<_>>(),
        );
    }
    writeln!(out, "{t}")
}

fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "NULL".to_owned(),
        other => other.to_string(),
    }
}

fn write_count(out: &mut impl Write, settings: &RaceSettings, run: &RaceRun) -> io::Result<()> {
    let (Some(sql), Some(counted)) = (&settings.count, run.counted) else {
        return Ok(());
    };
    let indeterminate = run.indeterminate();
    let verdict = if run.verdicts.contains(&crate::run::Verdict::Unaccounted) {
        if i64::from(run.successes) > counted {
            " — UNACCOUNTED: acknowledged successes that were not written (lost or phantom writes, or not the database the service writes)"
        } else {
            " — UNACCOUNTED: writes the client was never told of"
        }
    } else {
        ""
    };
    writeln!(
        out,
        "Count (read-only): {} → {counted} written; {} acknowledged{}{verdict}",
        one_line(sql),
        run.successes,
        if indeterminate > 0 {
            format!(", {indeterminate} without an answer (may have written)")
        } else {
            String::new()
        }
    )
}

fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn write_repeated(
    out: &mut impl Write,
    settings: &RaceSettings,
    runs: &[RaceRun],
    interrupted: bool,
) -> io::Result<()> {
    let mut t = table(vec![
        "Run",
        "Successes",
        "Refused",
        "No answer / 5xx",
        "Written (--count)",
        "Violating rows",
        "Arrival spread µs",
        "Verdict",
    ]);
    for run in runs {
        // Each outcome in one column: a 5xx is a failure (it may have written), not a refusal.
        let others: u64 = run
            .http
            .status_codes
            .iter()
            .filter(|(status, _)| !settings.success.contains(**status) && **status < 500)
            .map(|(_, n)| n)
            .sum();
        t.add_row(vec![
            run.run.to_string(),
            run.successes.to_string(),
            others.to_string(),
            run.indeterminate().to_string(),
            run.counted.map_or("-".to_owned(), |c| c.to_string()),
            run.check_rows.iter().sum::<usize>().to_string(),
            run.arrival
                .or(run.release)
                .map_or("-".to_owned(), |s| s.max_us.to_string()),
            run.verdict(),
        ]);
    }
    writeln!(out, "{t}")?;
    if let Some(line) = spread_over_runs(runs) {
        writeln!(out, "{line}")?;
    }
    // The first counterexample, shown whole.
    if let Some(first) = runs.iter().find(|r| !r.verdicts.is_empty()) {
        writeln!(out, "Run {}, the first that did not hold:", first.run)?;
        write_checks(out, settings, first)?;
        write_count(out, settings, first)?;
    }
    // Why a run that broke nothing proves nothing: the first such, in words.
    if let Some((run, why)) = runs
        .iter()
        .find_map(|r| r.caveat(settings).map(|why| (r.run, why)))
    {
        writeln!(out, "Run {run}: {why}")?;
    }
    let reopened: u32 = runs.iter().map(|r| r.reopened).sum();
    if reopened > 0 {
        writeln!(out, "{} (over all runs)", reopened_line(reopened))?;
    }
    let counts: Vec<String> = judge::verdict_counts(runs)
        .iter()
        .map(|(verdict, n)| format!("{verdict} {n}/{}", runs.len()))
        .collect();
    writeln!(
        out,
        "Verdicts over {} runs: {} — expected {}: {}",
        runs.len(),
        counts.join(", "),
        expect_word(settings.expect),
        met_word(judge::met(runs, settings) && !interrupted)
    )
}

/// The spread of the spreads: how steady the delivery was over the runs.
fn spread_over_runs(runs: &[RaceRun]) -> Option<String> {
    let server = runs.iter().all(|r| r.arrival.is_some());
    let mut maxes: Vec<u64> = runs
        .iter()
        .filter_map(|r| if server { r.arrival } else { r.release })
        .map(|s| s.max_us)
        .collect();
    if maxes.is_empty() {
        return None;
    }
    maxes.sort_unstable();
    Some(format!(
        "{} spread over {} runs (µs): min {}, median {}, max {}",
        if server {
            "Arrival (server)"
        } else {
            "Release (client)"
        },
        maxes.len(),
        maxes[0],
        maxes[maxes.len() / 2],
        maxes[maxes.len() - 1]
    ))
}

/// `race --json`: one run, or `--repeat` runs with their verdict counts.
#[derive(Debug, Serialize)]
pub struct RaceJson<'a> {
    /// `HELD`, `VIOLATED`, `UNACCOUNTED` (or `VIOLATED+UNACCOUNTED`); over `--repeat`, the
    /// verdict of the first run that did not hold, else `HELD`.
    pub verdict: String,
    pub expected: &'static str,
    pub expectation_met: bool,
    pub users: u32,
    /// Acknowledged successes (statuses in `--success`).
    pub successes: u32,
    /// Responses by status code.
    pub status_codes: BTreeMap<String, u64>,
    /// Requests that got no response (refused, reset, timed out).
    pub transport_errors: u64,
    /// Requests that got no answer or a 5xx: each may have written. Held is met only with at
    /// most `allow_errors` of them.
    pub errors: u32,
    /// Those failures by message (`"500 Internal Server Error"`, `"no answer within 3s
    /// (--timeout)"`).
    pub error_messages: BTreeMap<String, u32>,
    pub min_successes: u32,
    pub allow_errors: u32,
    /// Why a run that broke nothing proves nothing (`UNTESTED`, too many errors); `null`
    /// otherwise.
    pub caveat: Option<String>,
    /// Connections the server closed before the release, reopened before the burst.
    pub reopened: u32,
    /// Ctrl-C or SIGTERM ended the runs early: the run in progress was not judged.
    pub interrupted: bool,
    /// Runs finished and judged (with `interrupted`, fewer than `--repeat`).
    pub runs_judged: usize,
    /// Rows the checks returned, each `{"check": SQL, "row": {column: value}}`.
    pub violations: &'a [Violation],
    /// What `--count` says the run wrote; `null` without `--count`.
    pub counted: Option<i64>,
    pub latency_ms: crate::metrics::Percentiles,
    pub elapsed_ms: u128,
    /// `none` or `last-byte`.
    pub sync: &'static str,
    /// How close together the final bytes were written, client side: `{max_us, p50_gap_us,
    /// count}`.
    pub release_spread: Option<Spread>,
    /// How close together the requests arrived whole at the server, from its
    /// `Server-Timing: arrival`; `null` when it does not send one.
    pub arrival_spread: Option<Spread>,
    /// With `--repeat`: each run's own document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<RaceJson<'a>>>,
    /// With `--repeat`: verdict → in how many runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_counts: Option<BTreeMap<String, u32>>,
}

impl<'a> RaceJson<'a> {
    fn of_run(settings: &RaceSettings, run: &'a RaceRun) -> Self {
        Self {
            verdict: run.verdict(),
            expected: expect_word(settings.expect),
            expectation_met: run.expectation_met(settings),
            users: settings.users,
            successes: run.successes,
            status_codes: run
                .http
                .status_codes
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            transport_errors: run.http.transport_errors,
            errors: run.indeterminate(),
            error_messages: run.tally.errors.clone(),
            min_successes: settings.min_successes,
            allow_errors: settings.allow_errors,
            caveat: run.caveat(settings),
            reopened: run.reopened,
            interrupted: false,
            runs_judged: 1,
            violations: &run.violations,
            counted: run.counted,
            latency_ms: run.latency.summary(),
            elapsed_ms: run.elapsed.as_millis(),
            sync: settings.sync.name(),
            release_spread: run.release,
            arrival_spread: run.arrival,
            runs: None,
            verdict_counts: None,
        }
    }

    /// The document of `runs`; `interrupted`: the runs ended early (`INTERRUPTED` when none
    /// finished), and the expectation is never met.
    pub fn new(settings: &RaceSettings, runs: &'a [RaceRun], interrupted: bool) -> Self {
        let shown = runs
            .iter()
            .find(|r| !r.verdicts.is_empty())
            .or(runs.first());
        let mut json = match shown {
            Some(run) => Self::of_run(settings, run),
            None => Self::nothing(settings),
        };
        if runs.len() > 1 || interrupted {
            json.expectation_met = judge::met(runs, settings) && !interrupted;
            json.runs = Some(runs.iter().map(|r| Self::of_run(settings, r)).collect());
            json.verdict_counts = Some(judge::verdict_counts(runs));
        }
        json.interrupted = interrupted;
        json.runs_judged = runs.len();
        json
    }

    /// No run finished: nothing to show but that.
    fn nothing(settings: &RaceSettings) -> Self {
        Self {
            verdict: "INTERRUPTED".to_owned(),
            expected: expect_word(settings.expect),
            expectation_met: false,
            users: settings.users,
            successes: 0,
            status_codes: BTreeMap::new(),
            transport_errors: 0,
            errors: 0,
            error_messages: BTreeMap::new(),
            min_successes: settings.min_successes,
            allow_errors: settings.allow_errors,
            caveat: Some("interrupted before any run finished".to_owned()),
            reopened: 0,
            interrupted: true,
            runs_judged: 0,
            violations: &[],
            counted: None,
            latency_ms: crate::metrics::Latencies::default().summary(),
            elapsed_ms: 0,
            sync: settings.sync.name(),
            release_spread: None,
            arrival_spread: None,
            runs: None,
            verdict_counts: None,
        }
    }
}

/// JUnit XML: one test case per run, failing when the run did not meet the expectation (with
/// `--expect violated`, no case fails while one run violated).
pub fn write_junit(
    out: &mut impl Write,
    settings: &RaceSettings,
    runs: &[RaceRun],
    interrupted: bool,
) -> io::Result<()> {
    let together = judge::met(runs, settings);
    let met: Vec<bool> = runs
        .iter()
        .map(|r| match settings.expect {
            Expectation::Overbooking => together,
            _ => r.expectation_met(settings),
        })
        .collect();
    let failures = met.iter().filter(|m| !**m).count();
    let time: f64 = runs.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    // An interrupted race is one more case, in error: a CI reading the file sees it is not
    // the whole run.
    let errors = usize::from(interrupted);
    let tests = runs.len() + errors;
    let mut doc = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        doc,
        "<testsuites name=\"booking-cli race\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">\n  <testsuite name=\"booking-cli race\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{time:.3}\">"
    );
    for (run, met) in runs.iter().zip(met) {
        let _ = write!(
            doc,
            "    <testcase classname=\"booking-cli.race\" name=\"run {}\" time=\"{:.3}\"",
            run.run,
            run.elapsed.as_secs_f64()
        );
        if met {
            doc.push_str("/>\n");
        } else {
            let _ = writeln!(
                doc,
                ">\n      <failure type=\"expectation\" message=\"expected {}, the run shows {}\">{}</failure>\n    </testcase>",
                expect_word(settings.expect),
                super::ci::xml(&run.verdict()),
                super::ci::xml(&figures(settings, run))
            );
        }
    }
    if interrupted {
        let _ = writeln!(
            doc,
            "    <testcase classname=\"booking-cli.race\" name=\"interrupted\" time=\"0.000\">\n      <error type=\"interrupted\" message=\"interrupted (Ctrl-C or SIGTERM)\">{}</error>\n    </testcase>",
            super::ci::xml(&interrupted_line(settings, runs))
        );
    }
    doc.push_str("  </testsuite>\n</testsuites>\n");
    out.write_all(doc.as_bytes())
}

fn figures(settings: &RaceSettings, run: &RaceRun) -> String {
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
    figures
}

/// The runs as one GitHub-flavoured Markdown table.
pub fn write_markdown(
    out: &mut impl Write,
    settings: &RaceSettings,
    runs: &[RaceRun],
    interrupted: bool,
) -> io::Result<()> {
    let mut doc = format!(
        "**booking-cli {}** — verdicts read from the service's database\n\n",
        headline(settings).trim_start_matches("race: ")
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
