//! One run of `race`, judged by the user's invariant: their checks and count read from their
//! database after the burst, the successes the endpoint acknowledged, and the verdicts of
//! [`crate::run::verdict`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::RaceSettings;
use crate::check_db::{CheckDb, CheckDbError, Row, Violation};
use crate::error::InputError;
use crate::metrics::Latencies;
use crate::run::verdict::{self, Kind, Verdict};
use crate::run::{RaceResult, Tally};
use crate::sync::HttpStats;
use crate::sync::Spread;

/// What a `race` came to, as every output shows it: its settings, the runs judged, and whether
/// Ctrl-C or SIGTERM ended it early (the run in progress then not judged).
#[derive(Debug, Clone, Copy)]
pub struct Race<'a> {
    pub settings: &'a RaceSettings,
    pub runs: &'a [RaceRun],
    pub interrupted: bool,
}

/// What the burst's requests came to when sent one after another from the same start
/// (`--baseline sequential`): the most the service lets succeed when nothing is concurrent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OneByOne {
    pub sent: u32,
    pub successes: u32,
    /// No answer, or a 5xx.
    pub errors: u32,
}

/// A `--check-url` read before and after the burst: the bodies of its answers.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub before: Vec<u8>,
    pub after: Vec<u8>,
}

/// A finished run of `race`.
#[derive(Debug, Clone)]
pub struct RaceRun {
    /// From 1.
    pub run: u32,
    pub tally: Tally,
    pub http: HttpStats,
    pub latency: Latencies,
    pub elapsed: Duration,
    /// Acknowledged successes (statuses in `--success`).
    pub successes: u32,
    /// Every row the checks returned (up to a hundred per check), and the `--max-successes`
    /// violation.
    pub violations: Vec<Violation>,
    /// Rows each check returned, in all.
    pub check_rows: Vec<usize>,
    /// What `--count` says the run wrote (after minus before).
    pub counted: Option<i64>,
    /// `--baseline sequential`: the same requests, one by one, before the burst.
    pub baseline: Option<OneByOne>,
    pub verdicts: Vec<Verdict>,
    /// How close together the requests' final bytes were written (the client's clock).
    pub release: Option<Spread>,
    /// Release writes that went out (one per HTTP/1.1 connection or HTTP/2 packet).
    pub writes: usize,
    /// Connections the server closed before the release, reopened before the burst.
    pub reopened: u32,
    /// How close together they arrived whole, by the server's `Server-Timing: arrival`; `None`
    /// when the server does not say.
    pub arrival: Option<Spread>,
}

impl RaceRun {
    pub fn verdict(&self) -> String {
        verdict::join(&self.verdicts, Kind::Sql)
    }

    /// Answers that were neither a success nor a failure of the server's.
    pub fn refused(&self) -> u64 {
        self.http.by_request.iter().map(|r| r.refused).sum()
    }

    /// Requests that got no answer, or a 5xx: each may or may not have written.
    pub fn indeterminate(&self) -> u32 {
        self.tally.error_count()
    }

    /// Whether this run on its own showed what was expected. A run with more requests that
    /// got no answer or a 5xx than `--allow-errors` proves nothing about holding: each of
    /// them may have written, or may have been the one that would have broken it.
    pub fn expectation_met(&self, settings: &RaceSettings) -> bool {
        verdict::met(
            settings.expect,
            &self.verdicts,
            self.indeterminate() <= settings.allow_errors,
        )
    }

    /// Why a run that broke nothing still proves nothing, in words: too few successes
    /// (`UNTESTED`), or more failed requests than `--allow-errors`. `None` when neither.
    pub fn caveat(&self, settings: &RaceSettings) -> Option<String> {
        let mut why = Vec::new();
        if self.verdicts.contains(&Verdict::Untested) {
            if self.successes < settings.min_successes {
                why.push(format!(
                    "{} of {} request(s) succeeded, fewer than --min-successes {} ({}): nothing was tested",
                    self.successes,
                    settings.burst_size(),
                    settings.min_successes,
                    self.statuses()
                ));
            }
            for (name, got, min) in self.short_requests(settings) {
                why.push(format!(
                    "request {name}: {got} succeeded, fewer than its min-successes {min}: it was not tested"
                ));
            }
        }
        let failed = self.indeterminate();
        if failed > settings.allow_errors {
            let top = self
                .tally
                .errors
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(message, n)| format!("{n} × {message}"))
                .unwrap_or_default();
            why.push(format!(
                "{failed} request(s) got no answer or a 5xx ({top}), more than --allow-errors {}",
                settings.allow_errors
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// The `[[request]]` entries that got fewer successes than their own `min-successes`:
    /// `(name, successes, min)`.
    pub fn short_requests<'a>(&'a self, settings: &'a RaceSettings) -> Vec<(&'a str, u64, u32)> {
        settings
            .requests
            .iter()
            .zip(&self.http.by_request)
            .filter(|(request, counts)| counts.successes < u64::from(request.min_successes))
            .map(|(request, counts)| {
                (
                    request.template.name.as_str(),
                    counts.successes,
                    request.min_successes,
                )
            })
            .collect()
    }

    /// What came back, e.g. `403 × 20` or `no status`.
    pub fn statuses(&self) -> String {
        let mut parts: Vec<String> = self
            .http
            .status_codes
            .iter()
            .map(|(status, n)| format!("{status} × {n}"))
            .collect();
        if self.http.transport_errors > 0 {
            parts.push(format!("no answer × {}", self.http.transport_errors));
        }
        if parts.is_empty() {
            "no request was answered".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// What the verdicts are read from, in words, as every output says it: the check database
/// (its engine, host and name, and where the URL came from — never its user or password),
/// `--max-successes`, the sequential baseline. Nothing claims a database was read when none
/// was.
pub fn judged_by(settings: &RaceSettings) -> Vec<String> {
    let mut by = Vec::new();
    if let Some(url) = &settings.check_db
        && (!settings.checks.is_empty() || settings.count.is_some())
    {
        let place = ::url::Url::parse(url)
            .ok()
            .map(|u| {
                format!(
                    "{}{}{}",
                    u.host_str().unwrap_or("localhost"),
                    u.port().map(|p| format!(":{p}")).unwrap_or_default(),
                    u.path()
                )
            })
            .unwrap_or_else(|| "?".to_owned());
        let source = settings
            .check_db_source
            .as_ref()
            .map(|s| format!(", check-db from {s}"))
            .unwrap_or_default();
        by.push(format!("PostgreSQL {place} (read-only{source})"));
    }
    for check in &settings.api_checks {
        by.push(format!("the service's API: {}", check.display()));
    }
    if let Some(max) = settings.max_successes {
        by.push(format!("--max-successes {max}"));
    }
    if settings.baseline.is_some() {
        by.push("the same requests one by one (--baseline sequential)".to_owned());
    }
    by
}

/// What the count said before a run (after its `--setup`): the zero its writes are counted
/// from.
pub async fn count_before(
    db: Option<&CheckDb>,
    settings: &RaceSettings,
) -> Result<Option<i64>, CheckDbError> {
    match (db, &settings.count) {
        (Some(db), Some(sql)) => Ok(Some(db.count(sql).await?)),
        _ => Ok(None),
    }
}

/// Tries the setup, every check and the count once before anything is sent, in a transaction
/// rolled back (nothing is kept): a query PostgreSQL refuses (a syntax error, a missing table,
/// a write in the read-only part) is bad input; a check that already returns rows after the
/// setup cannot tell the run's writes from what was there.
pub async fn try_checks(db: &CheckDb, settings: &RaceSettings) -> Result<(), CheckDbError> {
    let mut queries: Vec<(String, String)> = settings
        .checks
        .iter()
        .enumerate()
        .map(|(i, check)| (format!("--check {}", i + 1), check.clone()))
        .collect();
    if let Some(sql) = &settings.count {
        queries.push(("--count".to_owned(), sql.clone()));
    }
    let found = db
        .trial(&settings.setup, &queries)
        .await
        .map_err(as_bad_input)?;
    for ((what, _), found) in queries.iter().zip(&found) {
        if what == "--count" {
            crate::check_db::number(found)?;
        } else if found.total > 0 {
            return Err(InputError::Invalid(format!(
                "{what} already returns {} row(s) before the burst (after --setup): it cannot tell this run's writes from the data already there; reset the data with --setup or narrow the check",
                found.total
            ))
            .into());
        }
    }
    Ok(())
}

/// A query PostgreSQL itself refused is the user's SQL at fault: bad input (exit 2).
fn as_bad_input(error: CheckDbError) -> CheckDbError {
    match error {
        CheckDbError::Query {
            what,
            source: sqlx::Error::Database(db),
        } => InputError::Invalid(format!(
            "{what} failed on the check database: {}",
            db.message()
        ))
        .into(),
        other => other,
    }
}

/// Reads the checks and the count after the burst and judges the run.
pub async fn judge(
    db: Option<&CheckDb>,
    settings: &RaceSettings,
    run: u32,
    race: RaceResult,
    before: Option<i64>,
    baseline: Option<OneByOne>,
    api: &[ApiState],
) -> Result<RaceRun, CheckDbError> {
    let successes = race.tally.successes();
    let mut violations = Vec::new();
    let mut check_rows = Vec::new();
    if let Some(db) = db {
        for (i, check) in settings.checks.iter().enumerate() {
            let found = db.rows(&format!("--check {}", i + 1), check).await?;
            check_rows.push(found.total);
            violations.extend(found.rows.into_iter().map(|row| Violation {
                check: check.clone(),
                row,
            }));
        }
    }
    if let Some(max) = settings.max_successes
        && u64::from(successes) > max
    {
        violations.push(Violation {
            check: format!("--max-successes {max}"),
            row: Row(vec![
                ("successes".to_owned(), Value::from(successes)),
                ("max_successes".to_owned(), Value::from(max)),
            ]),
        });
    }
    // The state read through the service's API: the expression must hold on what it read.
    for (check, state) in settings.api_checks.iter().zip(api) {
        if let super::jq::Judged::Broken(why) =
            super::jq::judge(&check.jq, &state.after, Some(&state.before), successes)
        {
            let text = String::from_utf8_lossy(&state.after);
            let read = serde_json::from_slice::<Value>(&state.after)
                .unwrap_or_else(|_| Value::from(text.chars().take(500).collect::<String>()));
            violations.push(Violation {
                check: check.display(),
                row: Row(vec![
                    ("why".to_owned(), Value::from(why)),
                    ("read".to_owned(), Value::from(read.to_string())),
                ]),
            });
        }
    }
    // More successes at once than one by one: what concurrency added is what it broke.
    if let Some(one_by_one) = baseline
        && successes > one_by_one.successes
    {
        violations.push(Violation {
            check: "--baseline sequential".to_owned(),
            row: Row(vec![
                ("one_by_one".to_owned(), Value::from(one_by_one.successes)),
                ("at_once".to_owned(), Value::from(successes)),
            ]),
        });
    }
    let counted = match (db, &settings.count, before) {
        (Some(db), Some(sql), Some(before)) => Some(db.count(sql).await? - before),
        _ => None,
    };
    let mut verdicts = Vec::new();
    if !violations.is_empty() {
        verdicts.push(Verdict::Violated);
    }
    verdicts.extend(verdict::accounted(
        successes,
        race.tally.error_count(),
        counted,
    ));
    let http = race
        .stats
        .remote::<HttpStats>()
        .cloned()
        .unwrap_or_default();
    // Nothing broke — but a burst in which too few got through tested nothing: too few in
    // all, or too few of a request that says how many of its own must get through.
    let short = settings
        .requests
        .iter()
        .zip(&http.by_request)
        .any(|(request, counts)| counts.successes < u64::from(request.min_successes));
    if verdicts.is_empty() && (successes < settings.min_successes || short) {
        verdicts.push(Verdict::Untested);
    }
    Ok(RaceRun {
        run,
        successes,
        release: Spread::of(http.releases_us.clone()),
        writes: http.releases_us.len(),
        reopened: u32::try_from(http.reopened).unwrap_or(u32::MAX),
        arrival: Spread::of(http.arrivals_us.clone()),
        http,
        tally: race.tally,
        latency: race.latency,
        elapsed: race.elapsed,
        violations,
        check_rows,
        counted,
        baseline,
        verdicts,
    })
}

/// Verdict → in how many runs it was given.
pub fn verdict_counts(runs: &[RaceRun]) -> BTreeMap<String, u32> {
    verdict::counts(runs.iter().map(RaceRun::verdict))
}

/// Whether the runs, together, met the expectation (one violated run proves the race; every
/// run must hold).
pub fn met(runs: &[RaceRun], settings: &RaceSettings) -> bool {
    !runs.is_empty()
        && verdict::met_over_runs(
            settings.expect,
            runs.iter().map(|r| r.expectation_met(settings)),
        )
}
