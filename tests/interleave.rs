//! `interleave`: every ordering of two users' steps, run through the real strategies, judged
//! from the database — and the transcripts, counts, expectations and bad schedules around it.

mod common;

use common::{Cli, json, text};
use serde_json::Value;

/// Connections an interleaving holds: one per user, one to watch, one spare — and `db reset`.
const BUDGET: u32 = 6;

fn cli() -> Cli {
    let cli = Cli::with_budget(BUDGET);
    cli.reset();
    cli
}

/// `booking-cli interleave ARGS --json`, which must exit 0: its summary.
fn interleave_json(cli: &Cli, args: &[&str]) -> Value {
    let out = cli.run(&[&["interleave"], args, &["--json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    json(&out)
}

/// The transcript's lines of one kind (`step`, `completed`, `skipped`, `aborted`, `outcome`).
fn lines<'a>(summary: &'a Value, kind: &str) -> Vec<&'a Value> {
    summary["transcript"]["lines"]
        .as_array()
        .map(|lines| lines.iter().filter(|l| l["kind"] == kind).collect())
        .unwrap_or_default()
}

/// Where `entry` appears in the transcript as `kind`.
fn position(summary: &Value, kind: &str, entry: &str) -> usize {
    summary["transcript"]["lines"]
        .as_array()
        .and_then(|lines| {
            lines
                .iter()
                .position(|l| l["kind"] == kind && l["entry"] == entry)
        })
        .unwrap_or_else(|| panic!("no {kind} line for {entry}: {summary}"))
}

#[test]
fn naive_overbooks_in_some_ordering_and_the_database_after_it_is_overbooked() {
    let cli = cli();
    let summary = interleave_json(&cli, &["--mode", "naive"]);
    assert_eq!(
        summary["orderings"], 20,
        "C(6, 3) orderings of 3 steps each"
    );
    // Every ordering but the two serial ones has both checks before the other user's commit.
    assert_eq!(summary["overbooked"], 18, "{summary}");
    assert_eq!(summary["errors"], 0);
    assert_eq!(summary["met"], true);
    let results = summary["results"].as_array().expect("results");
    assert_eq!(results.len(), 20);
    let serial = results
        .iter()
        .find(|r| r["schedule"] == "a.check a.write a.commit b.check b.write b.commit")
        .expect("the serial ordering is among them");
    assert_eq!(serial["verdict"], "SAFE");
    assert_eq!(serial["confirmed_bookings"], 1);

    // The transcript shown is an overbooking ordering, run again last: the database is in its
    // state now.
    let transcript = &summary["transcript"];
    assert_eq!(transcript["verdict"], "OVERBOOKED", "{summary}");
    let (total, booked, rows) = cli.reference_slot();
    assert_eq!((total, booked, rows), (1, 2, 2), "read from the database");
    let outcomes = lines(&summary, "outcome");
    assert_eq!(outcomes.len(), 2);
    assert!(
        outcomes
            .iter()
            .all(|o| o["status"].as_str().is_some_and(|s| s.starts_with("201")))
    );
}

#[test]
fn every_safe_strategy_holds_in_every_ordering_and_the_unsafe_ones_do_not() {
    let cli = cli();
    let matrix = interleave_json(&cli, &["--mode", "all"]);
    let summaries = matrix.as_array().expect("an array for --mode all");
    assert_eq!(summaries.len(), cli.strategy_names().len());
    for summary in summaries {
        let mode = summary["mode"].as_str().unwrap_or("?");
        let steps = summary["steps"]["a"].as_array().map_or(0, Vec::len) as u64;
        let expected_orderings = (1..=steps).fold(1u64, |c, i| c * (steps + i) / i);
        assert_eq!(summary["orderings"], expected_orderings, "{mode}");
        assert_eq!(summary["errors"], 0, "{mode}: {summary}");
        match mode {
            "naive" => assert!(summary["overbooked"].as_u64() > Some(0), "{summary}"),
            "lost-update" => {
                assert!(summary["overbooked"].as_u64() > Some(0), "{summary}");
                assert!(summary["lost_update"].as_u64() > Some(0), "{summary}");
            }
            _ => {
                assert_eq!(summary["overbooked"], 0, "{mode}: {summary}");
                assert_eq!(summary["lost_update"], 0, "{mode}: {summary}");
                // Every ordering that is not serial makes one user wait (or abort); with one
                // step, every ordering is serial. `sharded`'s two steps are two statements that
                // each commit on their own: nothing is held between them, so nobody waits.
                if steps > 1 && mode != "sharded" {
                    assert!(summary["blocked"].as_u64() > Some(0), "{mode}: {summary}");
                }
                for result in summary["results"].as_array().into_iter().flatten() {
                    assert_eq!(result["confirmed_bookings"], 1, "{mode}: {result}");
                    assert_eq!(result["booked_count"], 1, "{mode}: {result}");
                }
            }
        }
        assert_eq!(summary["met"], true, "{mode}");
    }
    let serializable = summaries
        .iter()
        .find(|s| s["mode"] == "serializable")
        .expect("serializable");
    assert!(serializable["aborted"].as_u64() > Some(0), "{serializable}");
}

#[test]
fn a_row_lock_makes_the_second_user_wait_until_the_first_commits() {
    let cli = cli();
    let summary = interleave_json(
        &cli,
        &[
            "--mode",
            "row-lock",
            "--schedule",
            "a.lock-rows b.lock-rows a.check a.write a.commit b.check b.write b.commit",
        ],
    );
    assert_eq!(summary["orderings"], 1);
    let waiting = &summary["transcript"]["lines"][1];
    assert_eq!(waiting["entry"], "b.lock-rows", "{summary}");
    assert!(
        waiting["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("PostgreSQL row lock")),
        "{summary}"
    );
    // b resumes only once a has committed, and then finds the room sold.
    assert!(
        position(&summary, "completed", "b.lock-rows") > position(&summary, "step", "a.commit")
    );
    assert_eq!(summary["results"][0]["blocked_steps"][0], "b.lock-rows");
    assert_eq!(summary["transcript"]["verdict"], "SAFE");
    let statuses: Vec<&str> = lines(&summary, "outcome")
        .iter()
        .filter_map(|o| o["status"].as_str())
        .collect();
    assert!(statuses[0].starts_with("201") && statuses[1].starts_with("409 sold out"));
    assert_eq!(cli.reference_slot(), (1, 1, 1));
}

#[test]
fn a_redis_lock_makes_the_second_user_wait_until_the_first_unlocks() {
    let cli = cli();
    let out = cli.run(&[
        "interleave",
        "--mode",
        "locked",
        "--schedule",
        "a.lock b.lock a.check a.write a.commit a.unlock b.check",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let waiting = stdout
        .find("step b.lock: <waiting ...>")
        .expect("b waits for the lock");
    assert!(
        stdout.contains("waits for the Redis lock"),
        "names what it waits for: {stdout}"
    );
    let unlock = stdout.find("step a.unlock").expect("a unlocks");
    let completed = stdout
        .find("step b.lock: <... completed>")
        .expect("b gets the lock");
    assert!(waiting < unlock && unlock < completed, "{stdout}");
    assert!(stdout.contains("b: 409 sold out"), "{stdout}");
    assert!(stdout.contains("final: booked_count 1/1 · confirmed 1 → SAFE"));
    assert_eq!(cli.reference_slot(), (1, 1, 1));
}

#[test]
fn a_transcript_shows_each_step_the_waits_and_the_state_after_every_step() {
    let cli = cli();
    let out = cli.run(&[
        "interleave",
        "--mode",
        "naive",
        "--schedule",
        "a.check b.check a.write b.write a.commit b.commit",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let transcript: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("permutation"))
        .collect();
    let expected = [
        "permutation a.check b.check a.write b.write a.commit b.commit",
        "step a.check  booked_count 0/1 · confirmed 0",
        "step b.check  booked_count 0/1 · confirmed 0",
        "step a.write  booked_count 0/1 · confirmed 0",
        // b's increment waits for a's uncommitted one: the row lock of the UPDATE.
        "step b.write: <waiting ...>  booked_count 0/1 · confirmed 0",
        "waits for a PostgreSQL row lock (transactionid)",
        "step a.commit  booked_count 1/1 · confirmed 1",
        "a: 201 Created",
        "step b.write: <... completed>",
        "step b.commit  booked_count 2/1 · confirmed 2",
        "b: 201 Created",
        "final: booked_count 2/1 · confirmed 2 → OVERBOOKED",
    ];
    let squeezed: Vec<String> = transcript
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(squeezed.len(), expected.len(), "{stdout}");
    for (line, want) in squeezed.iter().zip(expected) {
        let want = want.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            line.starts_with(&want),
            "{line:?} is not {want:?}\n{stdout}"
        );
    }
    assert_eq!(cli.reference_slot(), (1, 2, 2));
}

#[test]
fn a_serializable_attempt_postgresql_aborts_starts_over_and_is_refused() {
    let cli = cli();
    let summary = interleave_json(
        &cli,
        &[
            "--mode",
            "serializable",
            "--schedule",
            "a.check b.check a.write a.commit b.write b.commit",
        ],
    );
    assert_eq!(summary["aborted"], 1, "{summary}");
    let aborted = lines(&summary, "aborted");
    assert_eq!(aborted[0]["user"], "b");
    assert!(
        aborted[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("40001")),
        "{summary}"
    );
    // The aborted attempt's commit is skipped; the retry runs after the schedule, alone, and
    // finds the room sold.
    let all = summary["transcript"]["lines"].as_array().expect("lines");
    let abort = all
        .iter()
        .position(|l| l["kind"] == "aborted")
        .expect("abort");
    let retry = all
        .iter()
        .position(|l| l["kind"] == "step" && l["entry"] == "b.check" && l["after"] == true)
        .expect("b's retry checks again");
    assert!(
        abort < position(&summary, "skipped", "b.commit") && abort < retry,
        "{summary}"
    );
    let last = lines(&summary, "outcome");
    assert!(
        last[1]["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("409 sold out"))
    );
    assert_eq!(cli.reference_slot(), (1, 1, 1));
}

#[test]
fn three_users_queue_behind_one_row_lock() {
    let cli = cli();
    let summary = interleave_json(
        &cli,
        &[
            "--mode",
            "row-lock",
            "--users",
            "3",
            "--schedule",
            "a.lock-rows b.lock-rows c.lock-rows a.check a.write a.commit",
        ],
    );
    assert_eq!(
        summary["results"][0]["blocked_steps"],
        serde_json::json!(["b.lock-rows", "c.lock-rows"])
    );
    assert_eq!(lines(&summary, "outcome").len(), 3);
    assert_eq!(cli.reference_slot(), (1, 1, 1));
}

#[test]
fn an_ordering_that_does_not_show_the_expected_race_exits_3() {
    let cli = cli();
    let out = cli.run(&[
        "interleave",
        "--mode",
        "naive",
        "--schedule",
        "a.check a.write a.commit b.check b.write b.commit",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("expected: overbooking in some ordering — NOT met"));
    assert_eq!(cli.reference_slot(), (1, 1, 1));
}

#[test]
fn bad_schedules_are_one_line_exit_2_and_write_nothing() {
    let cli = cli();
    let before = cli.snapshot();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--mode", "naive", "--schedule", "a.check a.pay"],
            "naive has no step 'pay'",
        ),
        (
            &["--mode", "naive", "--schedule", "a.write a.check"],
            "breaks a's own order at 'a.write'",
        ),
        (
            &["--mode", "naive", "--schedule", "a.check c.check"],
            "unknown user 'c'",
        ),
        (
            &["--mode", "all", "--schedule", "a.check"],
            "--schedule needs one strategy",
        ),
        (
            &["--mode", "locked", "--users", "3"],
            "756756 orderings, more than --max-orderings",
        ),
        (&["--mode", "naive", "--users", "4"], "--users"),
    ];
    for (args, message) in cases {
        let mut full = vec!["interleave"];
        full.extend_from_slice(args);
        let out = cli.run(&full);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(cli.snapshot(), before, "nothing written");
}

#[test]
fn the_html_report_holds_the_matrix_and_the_transcripts() {
    let cli = cli();
    let dir = tempfile::tempdir().expect("a temp dir");
    let report = dir.path().join("interleave.html");
    let out = cli.run(&[
        "interleave",
        "--mode",
        "naive",
        "--report",
        report.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(&report).expect("the report was written");
    assert!(html.contains("id=\"naive\""));
    assert!(html.contains("permutation a.check"), "the transcript");
    assert!(html.contains("OVERBOOKED"));
    for external in ["http://", "https://", "<script", "<link", "src="] {
        assert!(!html.contains(external), "nothing external: {external}");
    }
}
