//! `stress --timeline`, `--trace` and `--report`: the race drawn from the phases the strategies
//! mark, checked against the run's own figures and the database.

mod common;

use common::{Cli, json, text};
use serde_json::Value;

fn cli() -> Cli {
    let cli = Cli::new();
    cli.reset();
    cli
}

/// (tid → [(name, ts, dur)]) of a trace's complete events, in order.
fn phases(trace: &Value) -> std::collections::BTreeMap<u64, Vec<(String, u64, u64)>> {
    let mut by_tid = std::collections::BTreeMap::new();
    for event in trace["traceEvents"].as_array().expect("traceEvents") {
        if event["ph"] == "X" {
            by_tid
                .entry(event["tid"].as_u64().unwrap_or(0))
                .or_insert_with(Vec::new)
                .push((
                    event["name"].as_str().unwrap_or("?").to_owned(),
                    event["ts"].as_u64().unwrap_or(0),
                    event["dur"].as_u64().unwrap_or(0),
                ));
        }
    }
    by_tid
}

/// The timeline's lanes: a user's short id, then the time axis.
fn lanes(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| {
            l.get(..8)
                .is_some_and(|id| id.chars().all(|c| c.is_ascii_hexdigit()))
                && l[8..].starts_with(" │")
        })
        .collect()
}

fn trace_of(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("the trace was written"))
        .expect("the trace is JSON")
}

#[test]
fn naive_timeline_shows_every_check_before_the_first_commit() {
    let cli = cli();
    let dir = tempfile::tempdir().expect("a temp dir");
    let trace = dir.path().join("naive.json");
    let out = cli.run(&[
        "stress",
        "--mode",
        "naive",
        "--users",
        "5",
        "--hold-ms",
        "100",
        "--timeline",
        "--trace",
        trace.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lanes = lanes(&stdout);
    assert_eq!(lanes.len(), 5, "one lane per user:\n{stdout}");
    assert!(lanes.iter().all(|l| l.ends_with("│ 201")), "{stdout}");
    assert!(stdout.contains("the slot became overbooked"), "{stdout}");

    let by_user = phases(&trace_of(&trace));
    assert_eq!(by_user.len(), 5);
    let last_check_end = by_user
        .values()
        .flat_map(|p| {
            p.iter()
                .filter(|(n, _, _)| n == "check")
                .map(|(_, ts, d)| ts + d)
        })
        .max()
        .expect("checks");
    let first_commit = by_user
        .values()
        .flat_map(|p| {
            p.iter()
                .filter(|(n, _, _)| n == "commit")
                .map(|(_, ts, _)| *ts)
        })
        .min()
        .expect("commits");
    assert!(
        last_check_end < first_commit,
        "every check ({last_check_end} µs) before the first commit ({first_commit} µs)"
    );
    assert_eq!(cli.reference_slot(), (1, 5, 5), "from the database");
}

#[test]
fn locked_timeline_shows_the_lock_waits_and_one_created_lane() {
    let cli = cli();
    let out = cli.run(&[
        "stress",
        "--mode",
        "locked",
        "--users",
        "5",
        // Long enough that no user can start after the winner's hold ended, however late
        // a loaded machine schedules its task: each of the four waits for the lock.
        "--hold-ms",
        "600",
        "--timeline",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lanes = lanes(&stdout);
    assert_eq!(lanes.len(), 5, "{stdout}");
    assert_eq!(lanes.iter().filter(|l| l.ends_with("│ 201")).count(), 1);
    let waiting = lanes.iter().filter(|l| l.contains("LLLL")).count();
    assert_eq!(waiting, 4, "four users wait for the lock:\n{stdout}");
    assert!(!stdout.contains('\u{1b}'), "no colour off a terminal");
    assert_eq!(cli.reference_slot(), (1, 1, 1));
}

#[test]
fn a_trace_has_one_track_per_user_whose_phases_add_up_to_its_latency() {
    let cli = cli();
    let dir = tempfile::tempdir().expect("a temp dir");
    let trace = dir.path().join("row-lock.json");
    let out = cli.run(&[
        "stress",
        "--mode",
        "row-lock",
        "--users",
        "8",
        "--hold-ms",
        "30",
        "--json",
        "--trace",
        trace.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body = json(&out);
    let trace = trace_of(&trace);
    let events = trace["traceEvents"].as_array().expect("events");
    let names = events.iter().filter(|e| e["name"] == "thread_name").count();
    assert_eq!(names, 8, "one named track per user");
    let known = ["begin", "lock", "check", "work", "write", "commit", "retry"];
    let by_user = phases(&trace);
    let mut longest = 0;
    for (tid, phases) in &by_user {
        for (name, _, _) in phases {
            assert!(known.contains(&name.as_str()), "phase {name}");
        }
        // Back to back, from the user's start to its end.
        for pair in phases.windows(2) {
            assert_eq!(pair[0].1 + pair[0].2, pair[1].1, "track {tid}: {phases:?}");
        }
        let total: u64 = phases.iter().map(|(_, _, d)| d).sum();
        longest = longest.max(total);
    }
    // The slowest user's phases add up to the run's largest latency, within a millisecond.
    let max_ms = body["latency"]["max_ms"].as_f64().expect("max latency");
    let longest_ms = longest as f64 / 1000.0;
    assert!(
        (max_ms - longest_ms).abs() <= 1.0,
        "phases {longest_ms} ms against latency {max_ms} ms"
    );
    assert!(
        events
            .iter()
            .any(|e| e["ph"] == "C" && e["args"]["created"] == 1),
        "a counter of bookings"
    );
}

#[test]
fn the_html_report_of_every_strategy_is_self_contained() {
    let cli = cli();
    let dir = tempfile::tempdir().expect("a temp dir");
    let report = dir.path().join("report.html");
    let out = cli.run(&[
        "stress",
        "--mode",
        "all",
        "--users",
        "6",
        "--hold-ms",
        "50",
        "--report",
        report.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(&report).expect("the report was written");
    for name in cli.strategy_names() {
        assert!(
            html.contains(&format!("id=\"{name}\"")),
            "{name} has its section"
        );
    }
    assert!(html.contains("<svg"), "inline drawings");
    assert!(html.contains("prefers-color-scheme: dark"));
    // Each section leads with its verdict as a sentence read from the database, and draws the
    // bookings committed over time against the inventory.
    assert!(
        html.contains("class=\"headline bad\">Room 1 on 2024-12-25 was sold ")
            && html.contains(" times; it had 1 room."),
        "an overbooking strategy's headline names it"
    );
    assert!(
        html.contains("class=\"headline good\">Room 1 on 2024-12-25 was sold once; it had 1 room.")
    );
    assert!(html.contains("Bookings committed over time"));
    assert!(html.contains("The inventory was crossed at"));
    for external in ["http://", "https://", "<script", "<link", "@import", "src="] {
        assert!(!html.contains(external), "nothing external: {external}");
    }
}

#[test]
fn drawing_a_race_needs_one_race() {
    let cli = cli();
    for extra in [
        &["--duration", "1s"][..],
        &["--repeat", "2"],
        &["--processes", "2"],
    ] {
        let mut args = vec!["stress", "--mode", "naive", "--timeline"];
        args.extend_from_slice(extra);
        let out = cli.run(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        assert!(
            text(&out.stderr).contains("draw one race"),
            "{}",
            text(&out.stderr)
        );
    }
}
