//! `stress` as text: the outcome table, the final state read from the database, the lock
//! figures, the latency, the verdict line.

use super::*;
use crate::sync::HttpStats;

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
    let http = report.stats.remote::<HttpStats>();
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
    if let Some(http) = report.stats.remote::<HttpStats>() {
        write_status_codes(out, http, t)?;
    } else {
        write_outcomes(out, c, t)?;
    }
    write_after_outcomes(out, report)
}

/// `stress --target`: the status codes as the servers sent them (as `hey` and `oha` show them),
/// then the messages of the users that failed.
pub(super) fn write_status_codes(
    out: &mut impl Write,
    http: &HttpStats,
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

pub(super) const fn row(
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

pub(super) fn write_outcomes(out: &mut impl Write, c: &StressConfig, t: &Tally) -> io::Result<()> {
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

pub(super) fn write_after_outcomes(out: &mut impl Write, report: &StressReport) -> io::Result<()> {
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

    writeln!(
        out,
        "Latency per user (ms): {}  —  {:.1} bookings/s",
        percentiles(&report.latency),
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
    if let Some(http) = report.stats.remote::<HttpStats>()
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
pub(super) fn write_latency_by_outcome(
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

pub(crate) fn night_state(night: &NightState) -> String {
    verdict::join(
        &verdict::of_nights(std::slice::from_ref(night)),
        verdict::Kind::Schema,
    )
}

/// The lock's figures; `failover`: the run failed the cluster's primary (`--chaos failover`),
/// which is then the likelier reason a lock did not last.
pub(super) fn write_lock_line(
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
pub(crate) fn sparkline(bins: &[(f64, u64)]) -> String {
    const LEVELS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let peak = bins.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    bins.iter()
        .map(|(_, count)| LEVELS[((count * 8).div_ceil(peak)) as usize])
        .collect()
}
