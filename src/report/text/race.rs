//! `race` as text: the statuses and latency as `hey` and `oha` show them, the rows the checks
//! returned, the count beside the successes, and the verdict line.

use std::io::{self, Write};

use serde_json::Value;

use crate::check_db::Violation;
use crate::race::RaceSettings;
use crate::race::judge::{self, Race, RaceRun};
use crate::strategy::Expectation;
use crate::sync::Spread;

use crate::report::{expectation_word, percentiles, table};

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
    let what = match settings.requests.as_slice() {
        [one] => format!(
            "{} {} — {} users",
            one.template.method,
            one.template.url.display(),
            settings.users
        ),
        several => format!(
            "{} requests in one burst ({}) — {} users",
            settings.burst_size(),
            several
                .iter()
                .map(|r| format!(
                    "{} × {} {} {}",
                    r.senders.len(),
                    r.template.name,
                    r.template.method,
                    r.template.url.display()
                ))
                .collect::<Vec<_>>()
                .join(", "),
            settings.users
        ),
    };
    let success = match settings.requests.as_slice() {
        [one] => one.success.display(),
        several => several
            .iter()
            .map(|r| format!("{}: {}", r.template.name, r.success.display()))
            .collect::<Vec<_>>()
            .join("; "),
    };
    let prepared = if settings.prepare.is_empty() {
        String::new()
    } else {
        format!(
            ", each logged in by {} [[prepare]] step(s) with a cookie jar of their own",
            settings.prepare.len()
        )
    };
    let source = settings
        .check_db_source
        .as_ref()
        .map(|source| format!("; check-db from {source}"))
        .unwrap_or_default();
    format!(
        "race: {what}{prepared}, {how} (--sync {}); success: {success}{source}",
        settings.sync.name(),
    )
}

/// Per request of a burst with several (`[[request]]`): what each came to.
pub(super) fn write_requests(
    out: &mut impl Write,
    http: &crate::sync::HttpStats,
) -> io::Result<()> {
    if http.by_request.len() < 2 {
        return Ok(());
    }
    let mut t = table(vec![
        "Request",
        "Sent",
        "Successes",
        "Refused",
        "No answer / 5xx",
        "Statuses",
        "Latency p50 ms",
        "max ms",
    ]);
    for request in &http.by_request {
        let (p50, max) = request
            .latency_ms()
            .map_or(("-".to_owned(), "-".to_owned()), |(p50, max)| {
                (format!("{p50:.1}"), format!("{max:.1}"))
            });
        t.add_row(vec![
            request.name.clone(),
            request.sent.to_string(),
            request.successes.to_string(),
            request.refused.to_string(),
            request.errors.to_string(),
            request
                .status_codes
                .iter()
                .map(|(status, n)| format!("{status} × {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            p50,
            max,
        ]);
    }
    writeln!(out, "{t}")
}

/// How close together the burst left and arrived: the server's word when it sent one.
pub(super) fn delivery_line(settings: &RaceSettings, run: &RaceRun) -> String {
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

pub(crate) fn expect_word(expect: Expectation) -> &'static str {
    match expect {
        Expectation::Safe => "held",
        Expectation::Overbooking => "violated",
        Expectation::Any => expectation_word(expect),
    }
}

pub(super) fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// The table of one run, or of `--repeat` runs; `interrupted`: Ctrl-C or SIGTERM ended the
/// runs early, and the one in progress was not judged.
pub fn write(out: &mut impl Write, race: &Race<'_>) -> io::Result<()> {
    let (settings, runs, interrupted) = (race.settings, race.runs, race.interrupted);
    writeln!(out, "{}", headline(settings))?;
    writeln!(out, "Judged by: {}", judge::judged_by(settings).join("; "))?;
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

pub(super) fn write_one(
    out: &mut impl Write,
    settings: &RaceSettings,
    run: &RaceRun,
    interrupted: bool,
) -> io::Result<()> {
    writeln!(out, "Status code distribution:")?;
    for (status, count) in &run.http.status_codes {
        // Marked only where the status alone says it: a success told by a header or the body
        // is in the successes line.
        let success = match settings.requests.as_slice() {
            [one]
                if one.success.headers.is_empty()
                    && one.success.body.is_none()
                    && one.success.status_may(*status) =>
            {
                "  (success)"
            }
            _ => "",
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
    writeln!(
        out,
        "Successes: {} acknowledged of {} request(s), {} refused",
        run.successes,
        settings.burst_size(),
        run.refused()
    )?;
    write_requests(out, &run.http)?;
    writeln!(out, "Latency (ms): {}", percentiles(&run.latency))?;
    writeln!(out, "{}", delivery_line(settings, run))?;
    if run.reopened > 0 {
        writeln!(out, "{}", reopened_line(run.reopened))?;
    }
    if run.http.answered_early > 0 {
        writeln!(out, "{}", early_line(run.http.answered_early))?;
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
pub(super) fn reopened_line(reopened: u32) -> String {
    format!(
        "Reopened: {reopened} connection(s) the server closed or reset before the release (a small accept backlog?) were opened again and pre-sent before the burst"
    )
}

/// Requests the server answered before their last byte: the release did not hold them back.
pub(super) fn early_line(early: u64) -> String {
    format!(
        "Answered early: {early} request(s) were answered before their last byte was sent — the server acts before a request is complete (a handler that never reads the body), so last-byte held nothing back for them; --sync single-packet --http2 does"
    )
}

pub(super) fn met_word(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

pub(super) fn write_checks(
    out: &mut impl Write,
    settings: &RaceSettings,
    run: &RaceRun,
) -> io::Result<()> {
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
    for check in &settings.api_checks {
        let shown = check.display();
        let broken: Vec<&Violation> = run.violations.iter().filter(|v| v.check == shown).collect();
        writeln!(
            out,
            "API check: {shown} → {}",
            if broken.is_empty() {
                "true"
            } else {
                "VIOLATED"
            }
        )?;
        for violation in broken {
            for (name, value) in &violation.row.0 {
                writeln!(out, "  {name}: {}", cell(value))?;
            }
        }
    }
    if let Some(one_by_one) = run.baseline {
        writeln!(
            out,
            "Baseline (one by one): {} of {} succeeded one after another{}, {} at once{}",
            one_by_one.successes,
            one_by_one.sent,
            if one_by_one.errors > 0 {
                format!(" ({} without an answer or with a 5xx)", one_by_one.errors)
            } else {
                String::new()
            },
            run.successes,
            if run.successes > one_by_one.successes {
                " — VIOLATED"
            } else {
                ""
            }
        )?;
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
pub(super) fn write_rows(out: &mut impl Write, rows: &[&Violation]) -> io::Result<()> {
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

pub(super) fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "NULL".to_owned(),
        other => other.to_string(),
    }
}

pub(super) fn write_count(
    out: &mut impl Write,
    settings: &RaceSettings,
    run: &RaceRun,
) -> io::Result<()> {
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

pub(super) fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(super) fn write_repeated(
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
        t.add_row(vec![
            run.run.to_string(),
            run.successes.to_string(),
            run.refused().to_string(),
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
    if settings.several() {
        let mut all = crate::sync::HttpStats::default();
        for run in runs {
            all.merge(&run.http);
        }
        writeln!(out, "Per request, over {} runs:", runs.len())?;
        write_requests(out, &all)?;
    }
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
    let early: u64 = runs.iter().map(|r| r.http.answered_early).sum();
    if early > 0 {
        writeln!(out, "{} (over all runs)", early_line(early))?;
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
pub(super) fn spread_over_runs(runs: &[RaceRun]) -> Option<String> {
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
