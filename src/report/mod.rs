//! What the user reads: tables and JSON, written to any `impl Write` so tests can capture them.
//! Nothing here decides anything; verdicts come from [`StressReport`].

pub mod ci;
pub mod html;
pub mod interleave;
pub mod race;
pub mod timeline;

use std::collections::BTreeMap;
use std::io::{self, Write};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};
use serde::Serialize;

use crate::config::BookConfig;
use crate::domain::Outcome;
use crate::lock::{LockPolicy, LockStats};
use crate::metrics::{Latencies, Percentiles};
use crate::repo::NightState;
use crate::run::verdict;
use crate::run::{ProcessRow, StressConfig, StressReport, Tally, Verdict};
use crate::strategy::{Expectation, Mode, Needs, Shows};

/// Nights listed in the final-state table before the rest is summarised (all are in `--json`).
const MAX_NIGHT_ROWS: usize = 24;

fn table(header: Vec<&str>) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    for column in table.column_iter_mut().skip(1) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    table
}

fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The room types a run spreads over (`--room`, `--rooms`), as the headlines name them.
fn room_types(c: &StressConfig) -> String {
    if c.rooms > 1 {
        format!("rooms {}-{}", c.room, c.room.get() + c.rooms as i32 - 1)
    } else {
        format!("room {}", c.room)
    }
}

/// The race of a comparison, as its headline, the Markdown summary and the HTML report say it:
/// `20 users on room 1, 2024-12-25 → 2024-12-26 (1 night), inventory 1, hold 200 ms`.
pub(crate) fn race_summary(c: &StressConfig) -> String {
    format!(
        "{} users on {}, {}{}, inventory {}, hold {} ms",
        c.users,
        room_types(c),
        c.stay,
        if c.mixed_ranges { ", mixed ranges" } else { "" },
        c.inventory,
        c.hold.as_millis()
    )
}

/// The outcome table, the final state read from the database, the figures, the verdict line.
pub fn write_stress(out: &mut impl Write, report: &StressReport) -> io::Result<()> {
    let c = &report.config;
    let rooms = room_types(c);
    let mixed = if c.mixed_ranges { ", mixed ranges" } else { "" };
    let processes = if c.processes > 1 {
        format!(" in {} processes", c.processes)
    } else {
        String::new()
    };
    let processes = match c.duration {
        Some(d) => format!(
            "{processes}, closed loop for {}",
            humantime::format_duration(d)
        ),
        None => processes,
    };
    let http = report.stats.http.as_ref();
    let hold = if c.servers > 0 {
        // The hold is the servers' own (`serve --hold-ms`).
        let sync = http
            .and_then(|h| h.sync)
            .map_or(String::new(), |s| format!(" (--sync {})", s.name()));
        format!(
            ", over HTTP to {} server{}{sync}",
            c.servers,
            if c.servers == 1 { "" } else { "s" }
        )
    } else if !c.mode.spec().slow_work && !c.hold.is_zero() {
        format!(
            ", hold {} ms not applied ({} has no place for slow work; --mode reserve runs it outside any lock)",
            c.hold.as_millis(),
            c.mode
        )
    } else {
        format!(", hold {} ms", c.hold.as_millis())
    };
    writeln!(
        out,
        "stress --mode {}: {} users{processes} on {rooms}, {}{mixed}, inventory {}{hold}",
        c.mode, c.users, c.stay, c.inventory,
    )?;

    let t = &report.tally;
    if let Some(http) = &report.stats.http {
        write_status_codes(out, http, t)?;
    } else {
        write_outcomes(out, c, t)?;
    }
    write_after_outcomes(out, report)
}

/// `stress --target`: the status codes as the servers sent them (as `hey` and `oha` show them),
/// then the messages of the users that failed.
fn write_status_codes(
    out: &mut impl Write,
    http: &crate::run::HttpStats,
    t: &Tally,
) -> io::Result<()> {
    let mut codes = table(vec!["HTTP status (as the server answered)", "Responses"]);
    for (status, count) in &http.status_codes {
        let reason = axum::http::StatusCode::from_u16(*status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        codes.add_row(vec![format!("{status} {reason}"), count.to_string()]);
    }
    codes.add_row(vec![
        "transport errors (no response)".to_owned(),
        http.transport_errors.to_string(),
    ]);
    writeln!(out, "{codes}")?;
    for (message, count) in &t.errors {
        writeln!(out, "  {count} × {message}")?;
    }
    Ok(())
}

/// When a row of the outcome table is shown even at zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Shown {
    /// In every run.
    Always,
    /// In the runs of the strategies that take a lock in Redis (the only ones that can be
    /// refused for a busy lock).
    ForRedisLocks,
    /// In the runs of this strategy.
    For(Mode),
    /// Only when some user had the outcome.
    WhenAny,
}

/// One row of the outcome table: what the text and HTML tables call it, what the per-process
/// table heads its column with, the outcomes it counts, and when it is shown.
pub(crate) struct OutcomeRow {
    pub label: &'static str,
    pub short: &'static str,
    pub kinds: &'static [&'static str],
    pub shown: Shown,
}

impl OutcomeRow {
    /// How many users of `t` it counts.
    pub fn count(&self, t: &Tally) -> u32 {
        self.kinds.iter().map(|kind| t.count(kind)).sum()
    }

    /// Whether a run of `mode` shows it even when nobody had it.
    pub fn shown_for(&self, mode: Mode) -> bool {
        match self.shown {
            Shown::Always => true,
            Shown::ForRedisLocks => mode.needs_redis() || mode.needs_redlock(),
            Shown::For(m) => m == mode,
            Shown::WhenAny => false,
        }
    }
}

const fn row(
    label: &'static str,
    short: &'static str,
    kinds: &'static [&'static str],
    shown: Shown,
) -> OutcomeRow {
    OutcomeRow {
        label,
        short,
        kinds,
        shown,
    }
}

/// The rows of the outcome table, in order.
pub(crate) const OUTCOME_ROWS: &[OutcomeRow] = &[
    row("201 Created", "Created", &["created"], Shown::Always),
    row(
        "409 Conflict (sold out)",
        "Sold out",
        &["sold_out"],
        Shown::Always,
    ),
    row(
        "409 Conflict (lock not acquired)",
        "Lock busy",
        &["lock_not_acquired", "lock_expired"],
        Shown::ForRedisLocks,
    ),
    row(
        "409 Conflict (retries exhausted)",
        "Retries exh.",
        &["retries_exhausted"],
        Shown::For(Mode::Serializable),
    ),
    row(
        "409 Conflict (stale lock token)",
        "Fenced out",
        &["fenced_out"],
        Shown::For(Mode::Fenced),
    ),
    row(
        "503 Unavailable (rooms on hold)",
        "On hold",
        &["on_hold"],
        Shown::For(Mode::Reserve),
    ),
    row(
        "402 Payment failed (hold cancelled)",
        "Payment failed",
        &["payment_failed"],
        Shown::For(Mode::Reserve),
    ),
    row(
        "409 Conflict (hold expired)",
        "Hold expired",
        &["hold_expired"],
        Shown::For(Mode::Reserve),
    ),
    row(
        "2xx (a success of the server's own)",
        "2xx",
        &["accepted"],
        Shown::WhenAny,
    ),
    row(
        "4xx (a refusal of the server's own)",
        "4xx",
        &["rejected"],
        Shown::WhenAny,
    ),
    row(
        "Interrupted (Ctrl-C; nothing written)",
        "Interrupted",
        &["interrupted"],
        Shown::WhenAny,
    ),
];

fn write_outcomes(out: &mut impl Write, c: &StressConfig, t: &Tally) -> io::Result<()> {
    let mut outcomes = table(vec!["Outcome", "Users"]);
    for row in OUTCOME_ROWS {
        let count = row.count(t);
        if row.shown_for(c.mode) || count > 0 {
            outcomes.add_row(vec![row.label.to_owned(), count.to_string()]);
        }
    }
    if t.errors.is_empty() {
        outcomes.add_row(vec!["500 Error".to_owned(), "0".to_owned()]);
    }
    for (message, count) in &t.errors {
        outcomes.add_row(vec![format!("500 Error: {message}"), count.to_string()]);
    }
    writeln!(out, "{outcomes}")
}

fn write_after_outcomes(out: &mut impl Write, report: &StressReport) -> io::Result<()> {
    let c = &report.config;
    let t = &report.tally;

    if !report.processes.is_empty() {
        // The columns of the outcome table this run shows: the same rows, per process.
        let rows: Vec<&OutcomeRow> = OUTCOME_ROWS
            .iter()
            .filter(|row| row.shown_for(c.mode) || row.count(t) > 0)
            .collect();
        let mut header = vec!["Process", "Users"];
        header.extend(rows.iter().map(|row| row.short));
        header.extend(["Errors", "Elapsed ms"]);
        let mut per_process = table(header);
        for p in &report.processes {
            let mut cells = vec![p.process.to_string(), p.users.to_string()];
            cells.extend(rows.iter().map(|row| row.count(&p.tally).to_string()));
            cells.extend([p.errors.to_string(), p.elapsed_ms.to_string()]);
            per_process.add_row(cells);
        }
        writeln!(out, "{per_process}")?;
    }

    // Holds are shown where there can be any (`reserve`), or where some are left.
    let holds = c.mode == Mode::Reserve || report.nights.iter().any(|n| n.held_bookings > 0);
    let mut header = vec![
        "Final state (read from PostgreSQL)",
        "total_inventory",
        "booked_count",
        "confirmed bookings",
    ];
    if holds {
        header.push("on hold");
    }
    header.push("state");
    let mut state = table(header);
    for night in report.nights.iter().take(MAX_NIGHT_ROWS) {
        let mut row = vec![
            format!("room {}, {}", night.room, night.night),
            night.total_inventory.to_string(),
            night.booked_count.to_string(),
            night.confirmed_bookings.to_string(),
        ];
        if holds {
            row.push(night.held_bookings.to_string());
        }
        row.push(night_state(night));
        state.add_row(row);
    }
    if report.nights.len() > MAX_NIGHT_ROWS {
        state.add_row(vec![format!(
            "… {} more nights (all in --json)",
            report.nights.len() - MAX_NIGHT_ROWS
        )]);
    }
    writeln!(out, "{state}")?;

    let l = report.latency.summary();
    writeln!(
        out,
        "Latency per user (ms): p50 {}  p95 {}  p99 {}  max {}  —  {:.1} bookings/s",
        ms(l.p50_ms),
        ms(l.p95_ms),
        ms(l.p99_ms),
        ms(l.max_ms),
        report.bookings_per_sec()
    )?;
    write_histogram(out, &report.latency, 6)?;
    if report.latency_by_outcome.len() > 1 {
        write_latency_by_outcome(out, &report.latency_by_outcome)?;
    }
    if let Some(lock) = &report.stats.strategy.lock {
        let failover = c.injects(crate::chaos::Fault::Failover);
        write_lock_line(out, lock, &c.lock_policy, failover)?;
    }
    if let Some(retries) = report.stats.strategy.tx_retries {
        writeln!(
            out,
            "Serializable: {retries} transaction(s) aborted by PostgreSQL and retried (budget {} per user)",
            c.retry.retries
        )?;
    }
    if let Some(waits) = report.stats.strategy.shard_waits {
        writeln!(
            out,
            "Shards: {} per night; {waits} booking(s) found every shard with a room busy (or none left) and asked again, waiting",
            c.shards
        )?;
    }
    if let Some(batches) = report.stats.strategy.batches {
        writeln!(
            out,
            "Batches: {} statement(s) carried {} booking(s): {:.1} per batch on average, {} at most",
            batches.batches,
            batches.bookings,
            batches.mean(),
            batches.largest
        )?;
    }
    if report.under_sold > 0 {
        let (failed, expired) = (t.count("payment_failed"), t.count("hold_expired"));
        let note = match (c.under_selling_expected(), c.mode == Mode::Reserve) {
            // The verdict line's own reason (StressReport::shortfall), said here too.
            _ if expired > 0 => format!(" — {}", report.shortfall().unwrap_or_default()),
            (true, true) if failed > 0 => format!(
                " — expected of reserve without a wait deadline: they were refused while rooms were on hold, and {failed} hold(s) whose payment failed gave their rooms back afterwards; --lock-wait-ms keeps them trying"
            ),
            (true, true) => " — expected of reserve without a wait deadline: they were refused while rooms were on hold; --lock-wait-ms keeps them trying".to_owned(),
            (true, false) => {
                " — expected of fixed lock retries; --lock-wait-ms sets a deadline instead".to_owned()
            }
            (false, _) => String::new(),
        };
        writeln!(
            out,
            "Under-selling: {} user(s) refused although every night of their stay still had a room{note}",
            report.under_sold
        )?;
        let unsold: i64 = report.nights.iter().map(|n| n.free().max(0)).sum();
        if unsold > 0 {
            writeln!(
                out,
                "Unsold: {unsold} room-night(s) left at the end ({} payment(s) failed, {} hold(s) expired)",
                t.count("payment_failed"),
                t.count("hold_expired")
            )?;
        }
    }
    if t.count("interrupted") > 0 {
        writeln!(
            out,
            "Interrupted: a partial run; {} user(s) did not book",
            t.count("interrupted")
        )?;
    }
    if let Some(why) = report.unaccounted() {
        writeln!(out, "Unaccounted: {why}")?;
    }
    if let Some(http) = report.stats.http.as_ref()
        && let Some(sync) = http.sync
    {
        let release = crate::sync::Spread::of(http.releases_us.clone());
        let arrival = crate::sync::Spread::of(http.arrivals_us.clone());
        writeln!(
            out,
            "{}",
            race::spread_line(
                sync,
                http.releases_us.len(),
                release.as_ref(),
                arrival.as_ref()
            )
        )?;
    }
    let why = report
        .shortfall()
        .map_or(String::new(), |why| format!(" ({why})"));
    writeln!(
        out,
        "Verdict: {}{why} in {} ms — expected {}: {}",
        report.verdict(),
        report.elapsed.as_millis(),
        expectation_word(c.expect),
        if report.expectation_met() {
            "met"
        } else {
            "NOT met"
        }
    )
}

/// One line per outcome: how long each kind of answer took.
fn write_latency_by_outcome(
    out: &mut impl Write,
    by_outcome: &BTreeMap<String, Latencies>,
) -> io::Result<()> {
    writeln!(out, "Latency by outcome (ms):")?;
    for (outcome, latency) in by_outcome {
        let l = latency.summary();
        writeln!(
            out,
            "  {outcome:<18} {:>7} × p50 {:>6}  p95 {:>6}  p99 {:>6}  max {:>6}",
            l.count,
            ms(l.p50_ms),
            ms(l.p95_ms),
            ms(l.p99_ms),
            ms(l.max_ms)
        )?;
    }
    Ok(())
}

fn night_state(night: &NightState) -> String {
    verdict::join(
        &verdict::of_nights(std::slice::from_ref(night)),
        verdict::Kind::Schema,
    )
}

/// The lock's figures; `failover`: the run failed the cluster's primary (`--chaos failover`),
/// which is then the likelier reason a lock did not last.
fn write_lock_line(
    out: &mut impl Write,
    lock: &LockStats,
    policy: &LockPolicy,
    failover: bool,
) -> io::Result<()> {
    let waiting = match policy.wait {
        Some(wait) => format!("deadline {} ms, jittered backoff", wait.as_millis()),
        None => format!(
            "{} retries {} ms apart",
            policy.retries,
            policy.retry_delay.as_millis()
        ),
    };
    writeln!(
        out,
        "Lock ({waiting}): {} taken, {} busy attempts, {} waits ended by a release; wait p50 {} / max {} ms; hold p50 {} / max {} ms",
        lock.locks_acquired,
        lock.lock_busy_attempts,
        lock.lock_waits_woken_by_release,
        ms(lock.lock_wait.p50_ms),
        ms(lock.lock_wait.max_ms),
        ms(lock.lock_hold.p50_ms),
        ms(lock.lock_hold.max_ms),
    )?;
    if let Some(cluster) = &lock.cluster {
        writeln!(
            out,
            "Cluster: {} MOVED and {} ASK redirections followed, {} CLUSTERDOWN/TRYAGAIN answers retried (the nodes' INFO errorstats{})",
            cluster.moved,
            cluster.ask,
            cluster.unavailable,
            match cluster.nodes_unread {
                0 => String::new(),
                n => format!("; {n} node(s) could not be read"),
            }
        )?;
    }
    if lock.locks_unreplicated > 0 {
        writeln!(
            out,
            "{} lock(s) given back untaken: fewer than --lock-replicas {} replicas acknowledged them in time",
            lock.locks_unreplicated, policy.replicas
        )?;
    }
    if lock.locks_expired_before_release > 0 {
        let why = if failover {
            "lost in the failover: the promoted replica never had the key".to_owned()
        } else {
            format!(
                "expired, re-taken, or the release failed (--lock-ttl-ms {}: is it shorter than the work?)",
                policy.ttl.as_millis()
            )
        };
        writeln!(
            out,
            "warning: {} lock(s) did not last until their release — {why}",
            lock.locks_expired_before_release,
        )?;
    }
    if lock.lock_notifications_dropped > 0 {
        writeln!(
            out,
            "warning: release notifications dropped {} time(s) and came back {} time(s); meanwhile lock waiters fell back to polling",
            lock.lock_notifications_dropped, lock.lock_notifications_resubscribed
        )?;
    }
    Ok(())
}

/// A few lines of bars: how many users finished in each latency band.
pub fn write_histogram(out: &mut impl Write, latency: &Latencies, lines: usize) -> io::Result<()> {
    const WIDTH: u64 = 40;
    let bins = latency.bins(lines);
    let peak = bins.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let mut lower = 0.0;
    for (upper, count) in bins {
        let bar = "█".repeat(((count * WIDTH).div_ceil(peak)) as usize);
        writeln!(
            out,
            "  {:>7} – {:>7} ms │{bar} {count}",
            ms(lower),
            ms(upper)
        )?;
        lower = upper;
    }
    Ok(())
}

/// One line of block characters, one per latency band, height by count.
fn sparkline(bins: &[(f64, u64)]) -> String {
    const LEVELS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let peak = bins.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    bins.iter()
        .map(|(_, count)| LEVELS[((count * 8).div_ceil(peak)) as usize])
        .collect()
}

fn expectation_word(expect: Expectation) -> &'static str {
    match expect {
        Expectation::Overbooking => "overbooking",
        Expectation::Safe => "safe",
        Expectation::Any => "any",
    }
}

/// One latency band of `latency_histogram`: `count` samples at most `upper_ms`, above the band
/// before.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Band {
    pub upper_ms: f64,
    pub count: u64,
}

/// The smallest, median and largest value of a figure over repeated runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
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

/// Whether each report met its expectation, with the runs of `--repeat` (consecutive groups of
/// `repeat`) judged together: a run that did not reproduce the race is no failure when another
/// run of its strategy did — one counterexample is the proof — while every run must be safe.
pub fn runs_met(reports: &[StressReport], repeat: u32) -> Vec<bool> {
    reports
        .chunks(repeat.max(1) as usize)
        .flat_map(|group| {
            let group_met = verdict::met_over_runs(
                group.first().map_or(Expectation::Any, |r| r.config.expect),
                group.iter().map(StressReport::expectation_met),
            );
            group.iter().map(move |r| match r.config.expect {
                Expectation::Overbooking => group_met,
                Expectation::Safe | Expectation::Any => r.expectation_met(),
            })
        })
        .collect()
}

/// How often each verdict occurred over the runs of one strategy (`SAFE` for none).
fn verdict_counts(runs: &[StressReport]) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for run in runs {
        *counts.entry(run.verdict()).or_default() += 1;
    }
    counts
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
    pub created: Spread,
    pub elapsed_ms: Spread,
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
            created: Spread::of(runs.iter().map(|r| f64::from(r.tally.successes()))),
            elapsed_ms: Spread::of(runs.iter().map(|r| r.elapsed.as_secs_f64() * 1000.0)),
            runs: runs.iter().map(StressJson::new).collect(),
        }
    }
}

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
        let spread = |s: Spread| format!("{:.0}/{:.0}/{:.0}", s.min, s.median, s.max);
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

/// (Σ booked_count, Σ confirmed rows) over every night.
fn totals(nights: &[NightState]) -> (i64, i64) {
    nights.iter().fold((0, 0), |(b, c), n| {
        (b + i64::from(n.booked_count), c + n.confirmed_bookings)
    })
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
        let synced = report.stats.http.as_ref().filter(|h| h.sync.is_some());
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
            status_codes: report.stats.http.as_ref().map(|http| {
                http.status_codes
                    .iter()
                    .map(|(status, count)| (status.to_string(), *count))
                    .collect()
            }),
            transport_errors: report.stats.http.as_ref().map(|http| http.transport_errors),
            sync: synced.and_then(|http| http.sync),
            release_spread: synced.map(|http| crate::sync::Spread::of(http.releases_us.clone())),
            arrival_spread: synced.map(|http| crate::sync::Spread::of(http.arrivals_us.clone())),
        }
    }
}

/// `strategies`: one row per registered strategy.
pub fn write_strategies(out: &mut impl Write, modes: &[Mode]) -> io::Result<()> {
    let mut strategies = table(vec![
        "Strategy",
        "Needs",
        "Expected",
        "Steps",
        "What it does",
    ]);
    for column in strategies.column_iter_mut() {
        column.set_cell_alignment(CellAlignment::Left);
    }
    for mode in modes {
        let spec = mode.spec();
        strategies.add_row(vec![
            spec.name.to_owned(),
            match spec.needs {
                Needs::Postgres => "PostgreSQL",
                Needs::Redis => "+ Redis",
                Needs::Redlock => "+ Redis ×N",
            }
            .to_owned(),
            match spec.shows {
                Shows::Overbooking => "overbooking",
                Shows::Safe => "safe",
                Shows::SafeInOneProcess => "safe in 1 process",
            }
            .to_owned(),
            spec.steps.join(" "),
            spec.summary.to_owned(),
        ]);
    }
    writeln!(out, "{strategies}")
}

/// One JSON document and a newline.
pub fn write_json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
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
            | Outcome::Accepted { .. }
            | Outcome::Rejected { .. } => (None, None, None),
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

/// One line: the status, and the booking id or the reason.
pub fn write_book(out: &mut impl Write, config: &BookConfig, outcome: &Outcome) -> io::Result<()> {
    let r = &config.request;
    match outcome {
        Outcome::Created { booking_id } => writeln!(
            out,
            "201 Created: booking {booking_id} for user {} in room {}, {} ({})",
            r.user, r.room, r.stay, config.mode
        ),
        Outcome::SoldOut { night } => writeln!(
            out,
            "409 Conflict (sold out): room {} has no room left on {night} ({})",
            r.room, config.mode
        ),
        Outcome::LockNotAcquired { key, attempts } => writeln!(
            out,
            "409 Conflict (lock not acquired): {key} stayed held by another booking for {attempts} attempts ({})",
            config.mode
        ),
        Outcome::FencedOut { night } => writeln!(
            out,
            "409 Conflict (stale lock token): the lock on {night} expired and a newer holder claimed it; nothing written ({})",
            config.mode
        ),
        Outcome::LockExpired { key } => writeln!(
            out,
            "409 Conflict (lock expired): {key} stopped being valid before the booking could commit; rolled back ({})",
            config.mode
        ),
        Outcome::OnHold { night } => writeln!(
            out,
            "503 Service Unavailable (rooms on hold): room {} on {night} is sold or on hold, and a hold whose payment fails gives its room back; try again ({})",
            r.room, config.mode
        ),
        Outcome::PaymentFailed => writeln!(
            out,
            "402 Payment Required (payment failed): the hold was cancelled and its nights given back ({})",
            config.mode
        ),
        Outcome::HoldExpired => writeln!(
            out,
            "409 Conflict (hold expired): the payment outlasted the hold; not confirmed, nights given back ({})",
            config.mode
        ),
        Outcome::Interrupted => writeln!(out, "interrupted: nothing was booked ({})", config.mode),
        Outcome::RetriesExhausted { attempts } => writeln!(
            out,
            "409 Conflict (retries exhausted): PostgreSQL aborted the transaction on all {attempts} attempts ({})",
            config.mode
        ),
        Outcome::Accepted { status } | Outcome::Rejected { status } => {
            writeln!(out, "{status} ({})", config.mode)
        }
    }
}
