//! Every `--json` document: `stress` (one run, `--repeat`), `book`, `race`. Field names are a
//! contract (docs/cli.md, docs/race.md).

use super::*;
use crate::sync::HttpStats;

use super::text::race::expect_word;
use crate::check_db::Violation;
use crate::race::RaceSettings;
use crate::race::judge::{self, Race, RaceRun};
use crate::run::judge::verdict_counts;

/// One latency band of `latency_histogram`: `count` samples at most `upper_ms`, above the band
/// before.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Band {
    pub upper_ms: f64,
    pub count: u64,
}

/// The smallest, median and largest value of a figure over repeated runs (not to be confused
/// with [`crate::sync::Spread`], how close together a burst's requests went out).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Range {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Range {
    fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut values: Vec<f64> = values.into_iter().collect();
        values.sort_by(f64::total_cmp);
        let at = |i: usize| values.get(i).copied().unwrap_or(0.0);
        let median = match values.len() {
            0 => 0.0,
            n if n % 2 == 1 => at(n / 2),
            n => (at(n / 2 - 1) + at(n / 2)) / 2.0,
        };
        Self {
            min: at(0),
            median,
            max: values.last().copied().unwrap_or(0.0),
        }
    }
}

/// `stress --repeat N --json`: one strategy's runs, summed up, with each run's own document.
#[derive(Debug, Serialize)]
pub struct RepeatJson<'a> {
    pub mode: Mode,
    /// Runs made (fewer than asked after Ctrl-C).
    pub repeat: usize,
    /// Verdict → in how many runs the database showed it.
    pub verdict_counts: BTreeMap<String, u32>,
    pub expected: Expectation,
    /// Runs that met the expectation. `expectation_met`: safety only when every run met it,
    /// the anomaly when at least one did (one counterexample is the proof).
    pub expectation_met_runs: usize,
    pub expectation_met: bool,
    pub created: Range,
    pub elapsed_ms: Range,
    /// Each run's own summary (the `stress --json` document).
    pub runs: Vec<StressJson<'a>>,
}

impl<'a> RepeatJson<'a> {
    pub fn new(runs: &'a [StressReport]) -> Self {
        let met = runs.iter().filter(|r| r.expectation_met()).count();
        Self {
            mode: runs.first().map_or(Mode::Naive, |r| r.config.mode),
            repeat: runs.len(),
            verdict_counts: verdict_counts(runs),
            expected: runs.first().map_or(Expectation::Any, |r| r.config.expect),
            expectation_met_runs: met,
            expectation_met: verdict::met_over_runs(
                runs.first().map_or(Expectation::Any, |r| r.config.expect),
                runs.iter().map(StressReport::expectation_met),
            ),
            created: Range::of(runs.iter().map(|r| f64::from(r.tally.successes()))),
            elapsed_ms: Range::of(runs.iter().map(|r| r.elapsed.as_secs_f64() * 1000.0)),
            runs: runs.iter().map(StressJson::new).collect(),
        }
    }
}

/// The `stress --json` document (one per strategy; `--mode all` prints an array of them).
#[derive(Debug, Serialize)]
pub struct StressJson<'a> {
    pub mode: Mode,
    pub users: u32,
    pub inventory: i32,
    pub room: i32,
    pub rooms: u32,
    pub from: String,
    pub to: String,
    pub mixed_ranges: bool,
    pub hold_ms: u128,
    pub created: u32,
    pub conflicts_sold_out: u32,
    pub conflicts_lock: u32,
    pub conflicts_retries: u32,
    /// Stale writes rejected by the fencing token (`fenced`).
    pub conflicts_fenced: u32,
    /// `reserve`: refused while every room left was on hold (503).
    pub refused_on_hold: u32,
    /// `reserve`: payments that failed; their holds were cancelled (402).
    pub payment_failed: u32,
    /// `reserve`: holds that expired before their confirmation (409).
    pub hold_expired: u32,
    /// Users that did not book because the run was interrupted (Ctrl-C).
    pub interrupted: u32,
    pub errors: u32,
    pub error_messages: &'a BTreeMap<String, u32>,
    /// The headline night: the first overbooked night of the slot, else its first night.
    pub total_inventory: i32,
    pub booked_count: i32,
    pub confirmed_bookings: i64,
    /// A night sold more rooms than it has, by its counter or its rows — the definition
    /// `interleave` uses too.
    pub overbooked: bool,
    /// A night oversold (counter or rows above the inventory).
    pub oversold: bool,
    /// A night whose confirmed rows ≠ its `booked_count`.
    pub lost_update: bool,
    /// Users refused although every night of their stay still had a room at the end.
    pub under_sold: u32,
    pub under_selling_expected: bool,
    /// Why the run sold less than it could, when it did and the reason is known (e.g. every
    /// hold expired before its payment ended); the verdict line says it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<String>,
    /// Confirmed bookings the database holds for the slot: every success acknowledged must be
    /// among them, or the verdict is `UNACCOUNTED`.
    pub written: i64,
    pub verdicts: Vec<Verdict>,
    pub verdict: String,
    pub expected: Expectation,
    pub expectation_met: bool,
    pub elapsed_ms: u128,
    pub bookings_per_sec: f64,
    pub latency: Percentiles,
    /// The latency percentiles of each outcome that occurred: `created`, `sold_out`,
    /// `lock_not_acquired`, `on_hold`, …, `error`.
    pub latency_by_outcome: BTreeMap<String, Percentiles>,
    /// Users (or bookings, with `--duration`) per latency band: eight equal bands up to p99,
    /// then the tail up to the maximum.
    pub latency_histogram: Vec<Band>,
    pub cleared_bookings: u64,
    /// Every night of every room of the slot.
    pub nights: &'a [NightState],
    #[serde(flatten)]
    pub lock_policy: Option<LockPolicy>,
    /// Lock counters and wait/hold times, for strategies that take a lock.
    pub lock: Option<LockStats>,
    /// Aborted transactions retried (`serializable`).
    pub tx_retries: Option<u64>,
    pub serializable_retries: Option<u32>,
    /// `sharded`: the shards of each night, and the bookings that found all busy and waited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_waits: Option<u64>,
    /// `batched`: statements and the bookings they carried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batches: Option<crate::strategy::BatchStats>,
    /// Operating-system processes the users were split over.
    pub processes: u32,
    /// With `--processes` > 1, each process's own outcome counts.
    pub per_process: &'a [ProcessRow],
    /// Worker processes that stopped answering and were killed (the run exits 1).
    pub lost_workers: &'a [String],
    /// `--target`: responses by HTTP status code, as the servers sent them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_codes: Option<BTreeMap<String, u64>>,
    /// `--target`: requests that got no response at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport_errors: Option<u64>,
    /// `--target --sync`: how the burst was released (absent: each request sent whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::sync::Sync>,
    /// `--target --sync`: how close together the final bytes were written (`null` for one
    /// write).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_spread: Option<Option<crate::sync::Spread>>,
    /// `--target --sync`: how close together the requests arrived whole, by the server's
    /// `Server-Timing: arrival`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrival_spread: Option<Option<crate::sync::Spread>>,
}

impl<'a> StressJson<'a> {
    pub fn new(report: &'a StressReport) -> Self {
        let c = &report.config;
        let headline = report.headline_night();
        let verdicts = report.verdicts();
        let synced = report
            .stats
            .remote::<HttpStats>()
            .filter(|h| h.sync.is_some());
        Self {
            mode: c.mode,
            users: c.users,
            inventory: c.inventory,
            room: c.room.get(),
            rooms: c.rooms,
            from: c.stay.from().to_string(),
            to: c.stay.to().to_string(),
            mixed_ranges: c.mixed_ranges,
            hold_ms: c.hold.as_millis(),
            created: report.tally.successes(),
            conflicts_sold_out: report.tally.count("sold_out"),
            conflicts_lock: report.tally.lock_refusals(),
            conflicts_retries: report.tally.count("retries_exhausted"),
            conflicts_fenced: report.tally.count("fenced_out"),
            refused_on_hold: report.tally.count("on_hold"),
            payment_failed: report.tally.count("payment_failed"),
            hold_expired: report.tally.count("hold_expired"),
            interrupted: report.tally.count("interrupted"),
            errors: report.tally.error_count(),
            error_messages: &report.tally.errors,
            total_inventory: headline.map_or(0, |n| n.total_inventory),
            booked_count: headline.map_or(0, |n| n.booked_count),
            confirmed_bookings: headline.map_or(0, |n| n.confirmed_bookings),
            overbooked: report.overbooked(),
            oversold: verdicts.contains(&Verdict::Overbooked),
            lost_update: verdicts.contains(&Verdict::LostUpdate),
            under_sold: report.under_sold,
            shortfall: report.shortfall(),
            written: report.written,
            under_selling_expected: c.under_selling_expected(),
            verdict: report.verdict(),
            verdicts,
            expected: c.expect,
            expectation_met: report.expectation_met(),
            elapsed_ms: report.elapsed.as_millis(),
            bookings_per_sec: report.bookings_per_sec(),
            latency: report.latency.summary(),
            latency_by_outcome: report
                .latency_by_outcome
                .iter()
                .map(|(outcome, latency)| (outcome.clone(), latency.summary()))
                .collect(),
            latency_histogram: report
                .latency
                .bins_to_p99(8)
                .into_iter()
                .map(|(upper_ms, count)| Band { upper_ms, count })
                .collect(),
            cleared_bookings: report.cleared_bookings,
            nights: &report.nights,
            lock_policy: c.mode.waits_with_lock_policy().then_some(c.lock_policy),
            lock: report.stats.strategy.lock,
            tx_retries: report.stats.strategy.tx_retries,
            serializable_retries: (c.mode == Mode::Serializable).then_some(c.retry.retries),
            shards: (c.mode == Mode::Sharded).then_some(c.shards),
            shard_waits: report.stats.strategy.shard_waits,
            batches: report.stats.strategy.batches,
            processes: c.processes,
            per_process: &report.processes,
            lost_workers: &report.lost_workers,
            status_codes: report.stats.remote::<HttpStats>().map(|http| {
                http.status_codes
                    .iter()
                    .map(|(status, count)| (status.to_string(), *count))
                    .collect()
            }),
            transport_errors: report
                .stats
                .remote::<HttpStats>()
                .map(|http| http.transport_errors),
            sync: synced.and_then(|http| http.sync),
            release_spread: synced.map(|http| crate::sync::Spread::of(http.releases_us.clone())),
            arrival_spread: synced.map(|http| crate::sync::Spread::of(http.arrivals_us.clone())),
        }
    }
}

/// The `book --json` document.
#[derive(Debug, Serialize)]
pub struct BookJson {
    pub status: u16,
    pub outcome: &'static str,
    pub booking_id: Option<i64>,
    pub sold_out_night: Option<String>,
    pub lock_key: Option<String>,
    pub user: String,
    pub room: i32,
    pub from: String,
    pub to: String,
    pub mode: Mode,
}

impl BookJson {
    pub fn new(config: &BookConfig, outcome: &Outcome) -> Self {
        let r = &config.request;
        let (booking_id, sold_out_night, lock_key) = match outcome {
            Outcome::Created { booking_id } => (Some(*booking_id), None, None),
            Outcome::SoldOut { night }
            | Outcome::FencedOut { night }
            | Outcome::OnHold { night } => (None, Some(night.to_string()), None),
            Outcome::LockNotAcquired { key, .. } | Outcome::LockExpired { key } => {
                (None, None, Some(key.clone()))
            }
            Outcome::RetriesExhausted { .. }
            | Outcome::PaymentFailed
            | Outcome::HoldExpired
            | Outcome::Interrupted
            | Outcome::Acknowledged
            | Outcome::Declined => (None, None, None),
        };
        let name = outcome.kind();
        Self {
            status: outcome.status(),
            outcome: name,
            booking_id,
            sold_out_night,
            lock_key,
            user: r.user.to_string(),
            room: r.room.get(),
            from: r.stay.from().to_string(),
            to: r.stay.to().to_string(),
            mode: config.mode,
        }
    }
}

/// `race --json`: one run, or `--repeat` runs with their verdict counts.
#[derive(Debug, Serialize)]
pub struct RaceJson<'a> {
    /// `HELD`, `VIOLATED`, `UNACCOUNTED` (or `VIOLATED+UNACCOUNTED`); over `--repeat`, the
    /// verdict of the first run that did not hold, else `HELD`.
    pub verdict: String,
    pub expected: &'static str,
    pub expectation_met: bool,
    /// The race's name (`--name`, the config file's stem).
    pub name: &'a str,
    pub users: u32,
    /// Acknowledged successes (as each request's `success` says).
    pub successes: u32,
    /// Per request of the burst (`[[request]]` names; `request` for the one-request form):
    /// `{name, sent, successes, refused, errors, status_codes, latency_ms: {p50, max}}`.
    pub requests: Vec<RequestJson>,
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
    /// Requests the server answered before their last byte was sent (it does not wait for
    /// the body): the release did not hold them back.
    pub answered_early: u64,
    /// Ctrl-C or SIGTERM ended the runs early: the run in progress was not judged.
    pub interrupted: bool,
    /// Runs finished and judged (with `interrupted`, fewer than `--repeat`).
    pub runs_judged: usize,
    /// Rows the checks returned, each `{"check": SQL, "row": {column: value}}`.
    pub violations: &'a [Violation],
    /// What `--count` says the run wrote; `null` without `--count`.
    pub counted: Option<i64>,
    /// `--baseline sequential`: `{sent, successes, errors}` of the same requests one by one;
    /// `null` without it.
    pub baseline: Option<crate::race::judge::OneByOne>,
    /// What the verdict was read from: the check database, `--max-successes`, the baseline.
    pub judged_by: Vec<String>,
    pub latency_ms: crate::metrics::Percentiles,
    pub elapsed_ms: u128,
    /// `none` or `last-byte`.
    pub sync: &'static str,
    /// How close together the final bytes were written, client side: `{max_us, p50_gap_us,
    /// count}`.
    pub release_spread: Option<crate::sync::Spread>,
    /// How close together the requests arrived whole at the server, from its
    /// `Server-Timing: arrival`; `null` when it does not send one.
    pub arrival_spread: Option<crate::sync::Spread>,
    /// With `--repeat`: each run's own document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<RaceJson<'a>>>,
    /// With `--repeat`: verdict → in how many runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_counts: Option<BTreeMap<String, u32>>,
}

/// One request of a burst, in `race --json`.
#[derive(Debug, Serialize)]
pub struct RequestJson {
    pub name: String,
    pub sent: u64,
    pub successes: u64,
    pub refused: u64,
    /// No answer, or a 5xx.
    pub errors: u64,
    pub status_codes: BTreeMap<String, u64>,
    /// `{p50, max}` from the release to the answer; `null` when none was sent.
    pub latency_ms: Option<BTreeMap<&'static str, f64>>,
}

impl RequestJson {
    fn of(counts: &crate::sync::stats::RequestCounts) -> Self {
        Self {
            name: counts.name.clone(),
            sent: counts.sent,
            successes: counts.successes,
            refused: counts.refused,
            errors: counts.errors,
            status_codes: counts
                .status_codes
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            latency_ms: counts
                .latency_ms()
                .map(|(p50, max)| BTreeMap::from([("p50", p50), ("max", max)])),
        }
    }
}

impl<'a> RaceJson<'a> {
    fn of_run(settings: &'a RaceSettings, run: &'a RaceRun) -> Self {
        Self {
            verdict: run.verdict(),
            expected: expect_word(settings.expect),
            expectation_met: run.expectation_met(settings),
            name: &settings.name,
            users: settings.users,
            successes: run.successes,
            requests: run.http.by_request.iter().map(RequestJson::of).collect(),
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
            answered_early: run.http.answered_early,
            interrupted: false,
            runs_judged: 1,
            violations: &run.violations,
            counted: run.counted,
            baseline: run.baseline,
            judged_by: judge::judged_by(settings),
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
    pub fn new(race: &Race<'a>) -> Self {
        let Race {
            settings,
            runs,
            interrupted,
        } = *race;
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
    fn nothing(settings: &'a RaceSettings) -> Self {
        Self {
            verdict: "INTERRUPTED".to_owned(),
            expected: expect_word(settings.expect),
            expectation_met: false,
            name: &settings.name,
            users: settings.users,
            successes: 0,
            requests: Vec::new(),
            status_codes: BTreeMap::new(),
            transport_errors: 0,
            errors: 0,
            error_messages: BTreeMap::new(),
            min_successes: settings.min_successes,
            allow_errors: settings.allow_errors,
            caveat: Some("interrupted before any run finished".to_owned()),
            reopened: 0,
            answered_early: 0,
            interrupted: true,
            runs_judged: 0,
            violations: &[],
            counted: None,
            baseline: None,
            judged_by: judge::judged_by(settings),
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
