//! The binary end to end, as a user or CI runs it: exit statuses, stdout, stderr, and the
//! database afterwards. Each test has its own database (created by `db reset` itself) and its
//! own lock key prefix.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cli, USER, json, redis_url, text};

#[test]
fn db_reset_creates_the_database_then_is_idempotent() {
    let cli = Cli::new();
    let first = cli.run(&["db", "reset"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert!(text(&first.stdout).starts_with("created database booking_test_"));
    assert_eq!(text(&first.stdout).lines().count(), 1);
    let after_first = cli.snapshot();

    let second = cli.run(&["db", "reset"]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    assert!(text(&second.stdout).starts_with("reset database booking_test_"));
    assert_eq!(cli.snapshot(), after_first);
    // 10 rooms × 17 nights × 5 rooms, less 4 on room 1's 2024-12-25.
    assert_eq!(after_first, (0, 0, 10 * 17 * 5 - 4));
    assert_eq!(cli.reference_slot(), (1, 0, 0));
}

#[test]
fn book_creates_once_then_reports_the_room_sold_out() {
    let cli = Cli::new();
    cli.reset();
    let args = [
        "book",
        "--user",
        USER,
        "--room",
        "1",
        "--from",
        "2024-12-25",
        "--hold-ms",
        "0",
    ];
    let created = cli.run(&args);
    assert_eq!(created.status.code(), Some(0), "{}", text(&created.stderr));
    assert!(
        text(&created.stdout).starts_with("201 Created: booking "),
        "{}",
        text(&created.stdout)
    );

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let conflict = cli.run(&json_args);
    assert_eq!(
        conflict.status.code(),
        Some(3),
        "{}",
        text(&conflict.stderr)
    );
    let body = json(&conflict);
    assert_eq!(body["status"], 409);
    assert_eq!(body["outcome"], "sold_out");
    assert_eq!(body["sold_out_night"], "2024-12-25");
    assert_eq!(cli.reference_slot(), (1, 1, 1));
}

#[test]
fn stress_json_reproduces_the_race_and_the_fix() {
    let cli = Cli::new();
    cli.reset();

    let naive = cli.run(&["stress", "--users", "20", "--mode", "naive", "--json"]);
    assert_eq!(naive.status.code(), Some(0), "{}", text(&naive.stderr));
    let body = json(&naive);
    for field in [
        "mode",
        "users",
        "inventory",
        "created",
        "conflicts_sold_out",
        "conflicts_lock",
        "errors",
        "total_inventory",
        "booked_count",
        "confirmed_bookings",
        "overbooked",
        "elapsed_ms",
    ] {
        assert!(body.get(field).is_some(), "--json lacks {field}: {body}");
    }
    assert_eq!(body["mode"], "naive");
    assert_eq!(body["overbooked"], true);
    let (total, booked, rows) = cli.reference_slot();
    assert!(
        booked > total && rows > total,
        "naive: database shows {total}/{booked}/{rows}"
    );
    assert_eq!(body["booked_count"], booked);

    // No reset in between: stress prepares its slot.
    let locked = cli.run(&["stress", "--users", "20", "--mode", "locked", "--json"]);
    assert_eq!(locked.status.code(), Some(0), "{}", text(&locked.stderr));
    let body = json(&locked);
    let conflicts =
        body["conflicts_sold_out"].as_u64().unwrap() + body["conflicts_lock"].as_u64().unwrap();
    assert_eq!(
        (body["created"].as_u64(), conflicts, body["errors"].as_u64()),
        (Some(1), 19, Some(0))
    );
    assert_eq!(body["overbooked"], false);
    assert_eq!(cli.reference_slot(), (1, 1, 1));

    // CI's guard: naive asked to be safe fails with 3.
    let guard = cli.run(&[
        "stress",
        "--users",
        "5",
        "--mode",
        "naive",
        "--expect",
        "safe",
        "--hold-ms",
        "100",
    ]);
    assert_eq!(guard.status.code(), Some(3), "{}", text(&guard.stderr));
    assert!(text(&guard.stdout).contains("OVERBOOKED"));
}

#[test]
fn the_table_shows_outcomes_and_the_database_state() {
    let cli = Cli::new();
    cli.reset();
    let out = cli.run(&["stress", "--users", "20", "--mode", "locked"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for row in [
        "201 Created",
        "409 Conflict (sold out)",
        "409 Conflict (lock not acquired)",
        "500 Error",
        "total_inventory",
        "booked_count",
        "confirmed bookings",
        "SAFE",
    ] {
        assert!(stdout.contains(row), "table lacks {row}:\n{stdout}");
    }
    assert!(
        text(&out.stderr).is_empty(),
        "stderr not empty: {}",
        text(&out.stderr)
    );
}

#[test]
fn every_bad_input_is_one_line_exit_2_and_writes_nothing() {
    let cli = Cli::new();
    cli.reset();
    let before = cli.snapshot();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "book",
                "--user",
                "user_1_0",
                "--room",
                "1",
                "--from",
                "2024-12-25",
            ],
            "--user",
        ),
        (
            &[
                "book",
                "--user",
                USER,
                "--room",
                "99",
                "--from",
                "2024-12-25",
            ],
            "room 99 does not exist",
        ),
        (
            &[
                "book",
                "--user",
                USER,
                "--room",
                "1",
                "--from",
                "2024-02-30",
            ],
            "--from",
        ),
        (
            &[
                "book",
                "--user",
                USER,
                "--room",
                "1",
                "--from",
                "2024-13-01",
            ],
            "--from",
        ),
        (
            &[
                "book",
                "--user",
                USER,
                "--room",
                "1",
                "--from",
                "2024-12-25",
                "--nights",
                "0",
            ],
            "--nights",
        ),
        (
            &[
                "book",
                "--user",
                USER,
                "--room",
                "1",
                "--from",
                "2024-12-25",
                "--to",
                "2024-12-25",
            ],
            "--to 2024-12-25 must be after --from 2024-12-25",
        ),
        (
            &[
                "book",
                "--user",
                USER,
                "--room",
                "1",
                "--from",
                "2025-01-05",
                "--nights",
                "2",
            ],
            "room 1 has no inventory on 2025-01-06",
        ),
        (
            &[
                "book",
                "--user",
                USER,
                "--room",
                "1",
                "--from",
                "2025-01-05",
                "--nights",
                "2",
                "--mode",
                "naive",
            ],
            "room 1 has no inventory on 2025-01-06",
        ),
        (&["stress", "--mode", "naive", "--users", "0"], "--users"),
        (
            &["stress", "--mode", "locked", "--room", "42"],
            "room 42 does not exist",
        ),
        (
            &[
                "stress",
                "--mode",
                "naive",
                "--from",
                "2025-01-04",
                "--nights",
                "3",
            ],
            "room 1 has no inventory on 2025-01-06",
        ),
        (&["stress", "--mode", "optimistic"], "--mode"),
        (&["stress"], "--mode"),
        (
            &[
                "stress",
                "--mode",
                "locked",
                "--processes",
                "2",
                "--connections",
                "8",
            ],
            "--connections",
        ),
        (
            &["stress", "--mode", "atomic", "--connections", "1"],
            "--connections",
        ),
        (&["--threads", "0", "bench", "lock"], "--threads"),
        (&["db", "reset", "--rooms", "0"], "--rooms"),
        (
            &["--database-url", "not a url", "stress", "--mode", "naive"],
            "DATABASE_URL",
        ),
    ];
    for (args, fragment) in cases {
        let out = cli.run(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: not one line: {stderr}"
        );
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains(fragment),
            "{args:?}: expected '{fragment}' in: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: wrote to stdout");
        assert_eq!(cli.snapshot(), before, "{args:?} changed the database");
    }
}

#[test]
fn unreachable_servers_fail_within_seconds_without_showing_passwords() {
    let cli = Cli::new();
    cli.reset();
    let before = cli.snapshot();
    let cases: &[&[&str]] = &[
        // Port 1 on loopback: nothing listens, refused at once.
        &[
            "--database-url",
            "postgres://postgres:Sup3rSecret@127.0.0.1:1/booking",
            "stress",
            "--mode",
            "naive",
        ],
        &[
            "--redis-url",
            "redis://:Sup3rSecret@127.0.0.1:1",
            "stress",
            "--mode",
            "locked",
        ],
        &[
            "--redis-url",
            "redis://:Sup3rSecret@127.0.0.1:1",
            "book",
            "--user",
            USER,
            "--room",
            "2",
            "--from",
            "2024-12-25",
        ],
    ];
    for args in cases {
        let started = Instant::now();
        let out = cli.run(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?} took {:?}",
            started.elapsed()
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("Sup3rSecret"), "password shown: {stderr}");
        assert!(stderr.contains(":***@"), "{args:?}: {stderr}");
    }
    assert_eq!(cli.snapshot(), before);
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let cli = Cli::new();
    for args in [&["--help"][..], &["stress", "--help"], &["book", "--help"]] {
        let out = cli.run(args);
        assert_eq!(out.status.code(), Some(0));
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("Examples:") && stdout.contains("Exit status"),
            "{args:?}:\n{stdout}"
        );
        assert!(
            !stdout.contains("postgres:postgres@"),
            "the default password is shown:\n{stdout}"
        );
    }
}

#[test]
fn stress_mode_all_json_has_one_entry_per_strategy_with_the_invariants() {
    let cli = Cli::new();
    cli.reset();
    let out = cli.run(&["stress", "--mode", "all", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body = json(&out);
    let entries = body.as_array().expect("--mode all --json is an array");
    let modes: Vec<_> = entries
        .iter()
        .map(|e| e["mode"].as_str().unwrap_or("?"))
        .collect();
    // Every registered strategy, in the registry's order, as `strategies --names` lists them.
    assert_eq!(modes, cli.strategy_names());
    assert!(modes.len() >= 10 && modes[0] == "naive", "{modes:?}");
    for entry in entries {
        for field in [
            "created",
            "conflicts_sold_out",
            "conflicts_lock",
            "conflicts_retries",
            "errors",
            "booked_count",
            "confirmed_bookings",
            "overbooked",
            "oversold",
            "lost_update",
            "under_sold",
            "verdicts",
            "verdict",
            "expectation_met",
            "latency",
            "bookings_per_sec",
            "elapsed_ms",
        ] {
            assert!(
                entry.get(field).is_some(),
                "{} lacks {field}",
                entry["mode"]
            );
        }
        assert_eq!(entry["expectation_met"], true, "{entry}");
    }
    assert_eq!(
        entries[1]["verdicts"],
        serde_json::json!(["OVERBOOKED", "LOST_UPDATE"])
    );
    assert_eq!(entries[1]["booked_count"], 1);
    for safe in &entries[2..] {
        // mutex is safe in one process.
        assert_eq!(safe["verdict"], "SAFE", "{safe}");
        assert_eq!(safe["created"], 1, "{safe}");
    }
    // The last run (serializable) left its state: one room sold, one row.
    assert_eq!(cli.reference_slot(), (1, 1, 1));
}

#[test]
fn mixed_ranges_need_a_stay_of_two_nights() {
    let cli = Cli::new();
    cli.reset();
    let before = cli.snapshot();
    let out = cli.run(&["stress", "--mode", "atomic", "--mixed-ranges"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--mixed-ranges needs a stay of 2 or more nights"));
    assert_eq!(cli.snapshot(), before);
}

/// Several operating-system processes against the same servers: the Redis lock still lets
/// exactly one booking through; an in-process mutex does not, because each process has its own.
#[test]
fn across_processes_locked_stays_safe_and_an_in_process_mutex_overbooks() {
    // 20 users, 4 workers, 2 for the parent.
    let cli = Cli::with_budget(26);
    cli.reset();
    let locked = cli.run(&["stress", "--mode", "locked", "--processes", "4", "--json"]);
    assert_eq!(locked.status.code(), Some(0), "{}", text(&locked.stderr));
    let body = json(&locked);
    assert_eq!(
        (body["created"].as_u64(), body["errors"].as_u64()),
        (Some(1), Some(0)),
        "{body}"
    );
    assert_eq!(body["per_process"].as_array().map(Vec::len), Some(4));
    assert_eq!(cli.reference_slot(), (1, 1, 1));

    // One process: the mutex is enough.
    let single = cli.run(&["stress", "--mode", "mutex", "--json"]);
    assert_eq!(single.status.code(), Some(0), "{}", text(&single.stderr));
    assert_eq!(json(&single)["created"], 1);
    assert_eq!(cli.reference_slot(), (1, 1, 1));

    // Four processes: one user per process gets through its own mutex.
    let multi = cli.run(&["stress", "--mode", "mutex", "--processes", "4", "--json"]);
    assert_eq!(multi.status.code(), Some(0), "{}", text(&multi.stderr));
    let body = json(&multi);
    assert_eq!(body["overbooked"], true, "{body}");
    let (total, booked, rows) = cli.reference_slot();
    assert_eq!((total, booked, rows), (1, 4, 4), "one booking per process");
}

/// Ctrl-C in the middle of a run: no new bookings start, waiters give up, the booking in flight
/// finishes and releases its lock, a partial report is printed, and the exit status is 130.
#[test]
fn ctrl_c_ends_the_run_with_a_partial_report_and_a_consistent_database() {
    let cli = Cli::new();
    cli.reset();
    let child = Command::new(env!("CARGO_BIN_EXE_booking-cli"))
        .args([
            "stress",
            "--mode",
            "locked",
            "--inventory",
            "5",
            "--hold-ms",
            "300",
        ])
        .args(["--lock-wait-ms", "20000", "--json"])
        .env("DATABASE_URL", &cli.db.url)
        .env("REDIS_URL", redis_url())
        .env("LOCK_KEY_PREFIX", &cli.prefix)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    std::thread::sleep(Duration::from_millis(700));
    let signalled = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let out = child.wait_with_output().expect("the run ends");
    cli.assert_interrupted(&out);
}

/// `stress --repeat N`: the whole race N times on a freshly prepared slot each, every verdict
/// read from the database, counted; exit 0 only when every run met its expectation.
#[test]
fn repeat_counts_the_verdicts_of_every_run_and_exits_by_all_of_them() {
    let cli = Cli::new();
    cli.reset();
    let naive = cli.run(&[
        "stress",
        "--repeat",
        "5",
        "--mode",
        "naive",
        "--hold-ms",
        "50",
        "--json",
    ]);
    assert_eq!(naive.status.code(), Some(0), "{}", text(&naive.stderr));
    let body = json(&naive);
    assert_eq!(
        body["verdict_counts"],
        serde_json::json!({"OVERBOOKED": 5}),
        "{body}"
    );
    assert_eq!(body["expectation_met"], true);
    let runs = body["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 5);
    assert!(
        runs.iter()
            .all(|r| r["booked_count"].as_i64().unwrap_or(0) > 1),
        "each run overbooked, by the database: {body}"
    );

    let locked = cli.run(&["stress", "--repeat", "5", "--mode", "locked", "--json"]);
    assert_eq!(locked.status.code(), Some(0), "{}", text(&locked.stderr));
    assert_eq!(
        json(&locked)["verdict_counts"],
        serde_json::json!({"SAFE": 5})
    );
    assert_eq!(cli.reference_slot(), (1, 1, 1));

    // One expectation missed in any run: exit 3, and the table says so.
    let guard = cli.run(&[
        "stress",
        "--repeat",
        "3",
        "--mode",
        "naive",
        "--hold-ms",
        "50",
        "--expect",
        "safe",
    ]);
    assert_eq!(guard.status.code(), Some(3), "{}", text(&guard.stderr));
    let table = text(&guard.stdout);
    assert!(
        table.contains("OVERBOOKED 3/3") && table.contains("did NOT meet"),
        "{table}"
    );
}

#[test]
fn completions_are_scripts_each_shell_accepts() {
    let cli = Cli::on_server(common::server_url());
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = cli.run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("booking-cli"),
            "{shell} script names the command"
        );
    }
    // bash parses the script and registers the completion.
    let script = cli.run(&["completions", "bash"]).stdout;
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("booking-cli.bash");
    std::fs::write(&path, script).expect("written");
    let registered = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && complete -p booking-cli",
            path.display()
        ))
        .output()
        .expect("bash runs");
    assert_eq!(
        registered.status.code(),
        Some(0),
        "{}",
        text(&registered.stderr)
    );
    assert!(text(&registered.stdout).contains("booking-cli"));
}

#[test]
fn the_man_page_renders_and_covers_every_command() {
    let cli = Cli::on_server(common::server_url());
    let out = cli.run(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().expect("a temp dir");
    let page = dir.path().join("booking-cli.1");
    std::fs::write(&page, &out.stdout).expect("written");
    let rendered = std::process::Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man runs");
    assert_eq!(
        rendered.status.code(),
        Some(0),
        "{}",
        text(&rendered.stderr)
    );
    let text = text(&rendered.stdout);
    for section in [
        "BOOKING-CLI DB RESET",
        "BOOKING-CLI BOOK",
        "BOOKING-CLI STRESS",
        "BOOKING-CLI INTERLEAVE",
        "BOOKING-CLI SERVE",
        "BOOKING-CLI STRATEGIES",
    ] {
        assert!(text.contains(section), "{section} in the page");
    }
    assert!(
        text.contains("--hold-ms"),
        "the commands' options are on the page"
    );
}

#[test]
fn version_names_the_version_and_the_commit_it_was_built_from() {
    let cli = Cli::on_server(common::server_url());
    let out = cli.run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let line = text(&out.stdout);
    assert!(
        line.starts_with(&format!("booking-cli {}", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    // Built from a git checkout (as the tests are): the short commit follows, in parentheses.
    if std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.git")).exists() {
        assert!(
            line.contains(" (") && line.trim_end().ends_with(')'),
            "{line}"
        );
    }
}

/// A JUnit report as a JUnit consumer reads it.
fn junit(path: &std::path::Path) -> junit_parser::TestSuites {
    let file = std::fs::File::open(path).expect("the JUnit report was written");
    junit_parser::from_reader(std::io::BufReader::new(file)).expect("valid JUnit XML")
}

#[test]
fn junit_has_one_case_per_strategy_and_a_failure_with_the_verdict_when_an_expectation_fails() {
    let cli = Cli::new();
    cli.reset();
    let dir = tempfile::tempdir().expect("a temp dir");
    let all = dir.path().join("all.xml");
    let out = cli.run(&[
        "stress",
        "--mode",
        "all",
        "--users",
        "6",
        "--hold-ms",
        "30",
        "--junit",
        all.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let suites = junit(&all);
    let cases: Vec<&junit_parser::TestCase> =
        suites.suites.iter().flat_map(|s| s.cases.iter()).collect();
    assert_eq!(cases.len(), cli.strategy_names().len());
    assert!(cases.iter().all(|c| c.status.is_success()));

    // The race CI must catch: naive expected safe fails, with the verdict and the numbers.
    let gate = dir.path().join("gate.xml");
    let out = cli.run(&[
        "stress",
        "--mode",
        "naive",
        "--users",
        "5",
        "--hold-ms",
        "30",
        "--expect",
        "safe",
        "--junit",
        gate.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let suites = junit(&gate);
    assert_eq!(suites.failures, 1);
    let case = &suites.suites[0].cases[0];
    assert_eq!(case.original_name, "naive");
    let junit_parser::TestStatus::Failure(failure) = &case.status else {
        panic!("the case fails: {case:?}");
    };
    assert!(
        failure.message.contains("OVERBOOKED"),
        "{}",
        failure.message
    );
    assert!(failure.text.contains("booked_count 5"), "{}", failure.text);
}

#[test]
fn markdown_prints_the_comparison_as_a_table() {
    let cli = Cli::new();
    cli.reset();
    let out = cli.run(&[
        "stress",
        "--mode",
        "locked",
        "--users",
        "5",
        "--hold-ms",
        "30",
        "--markdown",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(md.contains("| strategy | created |"), "{md}");
    assert!(md.contains("|---|"), "{md}");
    assert!(
        md.contains("| `locked` | 1 | 4 | 0 | 1 | 1 | SAFE |"),
        "{md}"
    );
    assert!(md.contains("Every run met its expectation."));
    assert!(!md.contains('┌'), "no terminal table");
}

/// `reserve` whose holds all expire before their payment ends sells nothing while the room is
/// free: the verdict is UNDER_SOLD and says why, and `--expect safe` is not met (exit 3) — the
/// tolerance for the known under-selling of refusals on hold does not cover it. The table shows
/// only the outcomes `reserve` can have.
#[test]
fn reserve_whose_holds_all_expire_is_under_sold_and_says_why() {
    let cli = Cli::new();
    cli.reset();
    let args = [
        "stress",
        "--mode",
        "reserve",
        "--users",
        "5",
        "--hold-ms",
        "300",
        "--hold-ttl-ms",
        "50",
    ];
    let out = cli.run(&args);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("Verdict: UNDER_SOLD (every hold expired before its payment ended"),
        "{stdout}"
    );
    assert!(!stdout.contains("lock not acquired"), "{stdout}");
    assert!(
        !stdout.contains("payment failed gave"),
        "no payment failed: {stdout}"
    );
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let body = json(&cli.run(&json_args));
    // Inventory 1: a hold at a time, each expired (how many depends on when the others came:
    // one that finds an expired hold reclaims it and holds in turn); nothing was sold.
    assert!(body["hold_expired"].as_u64().unwrap_or(0) >= 1, "{body}");
    assert_eq!(body["created"], 0, "{body}");
    assert_eq!(body["expectation_met"], false, "{body}");
    assert!(
        body["shortfall"]
            .as_str()
            .is_some_and(|s| s.contains("--hold-ttl-ms 50"))
    );
    assert_eq!(cli.reference_slot(), (1, 0, 0));
}

/// `--processes` hands each worker the whole plan: a setting that the flag-by-flag command line
/// once dropped (`--fail-rate`) reaches every worker — every payment fails, in every process.
#[test]
fn processes_hand_every_setting_to_the_workers() {
    let cli = Cli::new();
    cli.reset();
    let out = cli.run(&[
        "stress",
        "--mode",
        "reserve",
        "--users",
        "6",
        "--processes",
        "2",
        "--hold-ms",
        "20",
        "--fail-rate",
        "1",
        "--expect",
        "any",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body = json(&out);
    assert_eq!(body["created"], 0, "{body}");
    // Every user failed to pay or was refused; none bought. A refusal may read "sold out"
    // when it comes between a failed payment's release of its hold and the next hold (seen
    // once in a full run; noted for the reserve strategy).
    assert_eq!(
        body["payment_failed"].as_u64().unwrap_or(0)
            + body["refused_on_hold"].as_u64().unwrap_or(0)
            + body["conflicts_sold_out"].as_u64().unwrap_or(0),
        6,
        "{body}"
    );
    assert!(body["payment_failed"].as_u64().unwrap_or(0) >= 1, "{body}");
    let table = text(
        &cli.run(&[
            "stress",
            "--mode",
            "reserve",
            "--users",
            "6",
            "--processes",
            "2",
            "--hold-ms",
            "20",
        ])
        .stdout,
    );
    assert!(
        table.contains("On hold"),
        "the per-process table has the on-hold column: {table}"
    );
}
