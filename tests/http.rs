//! The booking API over real HTTP: a server on an ephemeral port (in this process, or the
//! binary), real PostgreSQL and Redis, a real HTTP client — and every verdict from the database.

mod common;

use std::time::Duration;

use booking_cli::http::{self, AppState, ServeSettings, Setup};
use booking_cli::repo::Repo;
use booking_cli::stop::Stop;
use booking_cli::strategy::Mode;
use common::{
    Cli, ServeProcess, TestDb, block_on, json, private_lock, redis_url, reference_policy, text,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A `serve` of the test's own: its database, its key prefix, an ephemeral port.
struct Server {
    base: String,
    repo: Repo,
    db: TestDb,
    shutdown: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<bool>>,
}

impl Server {
    async fn start(mode: Mode, hold_ms: u64) -> Self {
        Self::start_with(hold_ms, ServeSettings::new(mode)).await
    }

    async fn start_with(hold_ms: u64, settings: ServeSettings) -> Self {
        let (db, repo) = TestDb::seeded().await;
        let lock = private_lock().await;
        let stop = Stop::new();
        let state = AppState::new(
            Setup {
                repo: repo.clone(),
                lock: Some(lock),
                redlock: None,
                tuning: booking_cli::strategy::Tuning {
                    hold: Duration::from_millis(hold_ms),
                    lock_policy: reference_policy(),
                    retry: common::retry_policy(20),
                    payments: booking_cli::strategy::Payments::default(),
                },
                stop: stop.clone(),
            },
            settings,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let base = format!("http://{}", listener.local_addr().expect("bound"));
        let (shutdown, signal) = oneshot::channel::<()>();
        let served = tokio::spawn(http::serve(listener, state, stop, async {
            let _ = signal.await;
        }));
        Self {
            base,
            repo,
            db,
            shutdown: Some(shutdown),
            served,
        }
    }

    async fn stop(&mut self) -> bool {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.served).await.expect("no panic").expect("served")
    }

    /// (total_inventory, booked_count, confirmed rows) of room 1 on 2024-12-25.
    async fn reference_slot(&self) -> (i32, i32, i64) {
        let night = self
            .repo
            .slot_state(
                booking_cli::domain::RoomId::new(1).unwrap(),
                &booking_cli::domain::Stay::nights_from("2024-12-25".parse().unwrap(), 1).unwrap(),
            )
            .await
            .unwrap()[0];
        (
            night.total_inventory,
            night.booked_count,
            night.confirmed_bookings,
        )
    }
}

fn booking(room: i64) -> Value {
    json!({
        "user_id": uuid::Uuid::new_v4(),
        "room_id": room,
        "start_date": "2024-12-25",
        "end_date": "2024-12-26",
    })
}

/// 20 clients, each with its own UUID, POST at once; the statuses they got, sorted.
async fn race(base: &str, mode: Option<&str>) -> Vec<u16> {
    let client = common::client();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (client, barrier, url) = (
            client.clone(),
            barrier.clone(),
            format!("{base}/api/bookings"),
        );
        let mode = mode.map(str::to_owned);
        set.spawn(async move {
            let mut request = client.post(&url).json(&booking(1));
            if let Some(mode) = mode {
                request = request.header("X-Booking-Mode", mode);
            }
            barrier.wait().await;
            request.send().await.expect("a response").status().as_u16()
        });
    }
    let mut statuses = set.join_all().await;
    statuses.sort_unstable();
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_posts_give_one_201_with_locked_and_overbook_with_naive() {
    let mut server = Server::start(Mode::Locked, 200).await;
    let statuses = race(&server.base, None).await;
    assert_eq!(statuses[0], 201, "{statuses:?}");
    assert!(
        statuses[1..].iter().all(|s| *s == 409 || *s == 503),
        "one created, the rest refused, no 5xx but 503: {statuses:?}"
    );
    assert_eq!(server.reference_slot().await, (1, 1, 1));

    // The same server, naive per request: several 201, and the database is overbooked.
    server
        .repo
        .prepare_slot(
            booking_cli::domain::RoomId::new(1).unwrap(),
            &booking_cli::domain::Stay::nights_from("2024-12-25".parse().unwrap(), 1).unwrap(),
            1,
            booking_cli::repo::DEFAULT_SHARDS,
        )
        .await
        .unwrap();
    let statuses = race(&server.base, Some("naive")).await;
    let created = statuses.iter().filter(|s| **s == 201).count();
    assert!(created > 1, "{statuses:?}");
    let (total, booked, rows) = server.reference_slot().await;
    assert!(
        booked > total && rows > 1,
        "overbooked: {total}/{booked}/{rows}"
    );
    assert!(server.stop().await, "drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_is_created_read_back_and_shown_in_availability_and_metrics() {
    let mut server = Server::start(Mode::Atomic, 0).await;
    let client = common::client();
    let body = booking(2);
    let response = client
        .post(format!("{}/api/bookings", server.base))
        .header("X-Request-Id", "req-42")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "req-42", "echoed");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/bookings/{}", created["id"]));
    assert_eq!(created["user_id"], body["user_id"]);
    assert_eq!(
        (
            created["room_id"].clone(),
            created["start_date"].clone(),
            created["end_date"].clone(),
            created["status"].clone(),
            created["mode"].clone()
        ),
        (
            json!(2),
            json!("2024-12-25"),
            json!("2024-12-26"),
            json!("confirmed"),
            json!("atomic")
        )
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(created["created_at"].as_str().unwrap()).is_ok(),
        "{created}"
    );
    let shown: Value = client
        .get(format!("{}{location}", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["id"], created["id"]);
    let nights: Value = client
        .get(format!(
            "{}/api/rooms/2/availability?from=2024-12-25&to=2024-12-27",
            server.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        nights["nights"],
        json!([
            {"date": "2024-12-25", "total_inventory": 5, "booked_count": 1, "available": 4},
            {"date": "2024-12-26", "total_inventory": 5, "booked_count": 0, "available": 5}
        ])
    );
    let pong: Value = client
        .get(format!("{}/ping", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pong, json!({"message": "pong"}));
    let health = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "booking_http_responses_total{status=\"201\",mode=\"atomic\"}",
        "booking_duration_seconds_bucket{mode=\"atomic\",outcome=\"created\"",
        "booking_lock_acquired_total{mode=\"locked\"}",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    assert!(server.stop().await);
}

/// Every error class: its status, `application/problem+json`, and the database unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answers_its_status_as_problem_json_and_writes_nothing() {
    let mut server = Server::start(Mode::Locked, 0).await;
    let before = common::snapshot(&server.db.url).await;
    let client = common::client();
    let url = format!("{}/api/bookings", server.base);
    let valid = booking(2);
    let mut bad_field = valid.clone();
    bad_field["start_date"] = json!("25/12/2024");
    let mut missing = valid.clone();
    missing.as_object_mut().unwrap().remove("user_id");
    let mut backwards = valid.clone();
    backwards["end_date"] = json!("2024-12-25");
    let mut unknown_room = valid.clone();
    unknown_room["room_id"] = json!(99);
    let mut before_postgres = valid.clone();
    before_postgres["start_date"] = json!("-5000-01-01");
    before_postgres["end_date"] = json!("-5000-01-02");
    let mut no_inventory = valid.clone();
    no_inventory["start_date"] = json!("2025-01-06");
    no_inventory["end_date"] = json!("2025-01-07");
    let huge = "x".repeat(20 * 1024);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, Option<&str>)> = vec![
        (
            "malformed JSON",
            client
                .post(&url)
                .header("content-type", "application/json")
                .body("{\"user_id\":"),
            400,
            None,
        ),
        (
            "mistyped field",
            client.post(&url).json(&bad_field),
            400,
            Some("start_date"),
        ),
        (
            "missing field",
            client.post(&url).json(&missing),
            400,
            Some("user_id"),
        ),
        (
            "unknown mode",
            client
                .post(&url)
                .header("X-Booking-Mode", "yolo")
                .json(&valid),
            400,
            Some("X-Booking-Mode"),
        ),
        (
            "wrong content type",
            client
                .post(&url)
                .header("content-type", "text/plain")
                .body(valid.to_string()),
            415,
            None,
        ),
        (
            "body over the limit",
            client
                .post(&url)
                .header("content-type", "application/json")
                .body(format!("{{\"pad\":\"{huge}\"}}")),
            413,
            None,
        ),
        (
            "end not after start",
            client.post(&url).json(&backwards),
            422,
            Some("end_date"),
        ),
        (
            "unknown room",
            client.post(&url).json(&unknown_room),
            422,
            Some("room_id"),
        ),
        (
            // `naive` tells an unknown room by itself; serve asks the hotel first only for the
            // strategies that would lock or count something before they read.
            "unknown room, under a strategy that checks the stay itself",
            client
                .post(&url)
                .header("X-Booking-Mode", "naive")
                .json(&unknown_room),
            422,
            Some("room_id"),
        ),
        (
            "night without inventory, under a strategy that checks the stay itself",
            client
                .post(&url)
                .header("X-Booking-Mode", "naive")
                .json(&no_inventory),
            422,
            None,
        ),
        (
            "a date PostgreSQL cannot store",
            client.post(&url).json(&before_postgres),
            422,
            Some("start_date"),
        ),
        (
            "night without inventory",
            client.post(&url).json(&no_inventory),
            422,
            None,
        ),
        (
            "unknown path",
            client.get(format!("{}/api/nope", server.base)),
            404,
            None,
        ),
        (
            "unknown booking",
            client.get(format!("{}/api/bookings/424242", server.base)),
            404,
            None,
        ),
        (
            "method not allowed",
            client.delete(format!("{}/api/bookings", server.base)),
            405,
            None,
        ),
    ];
    for (what, request, status, field) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], status, "{what}: {body}");
        for member in ["type", "title", "detail"] {
            assert!(body[member].is_string(), "{what}: no {member}: {body}");
        }
        if let Some(field) = field {
            assert_eq!(body["field"], field, "{what}: {body}");
        }
        let detail = body["detail"].as_str().unwrap_or("");
        assert!(
            !detail.contains("SELECT") && !detail.contains("postgres://"),
            "{what}: {detail}"
        );
    }
    assert_eq!(
        common::snapshot(&server.db.url).await,
        before,
        "nothing written"
    );
    assert!(server.stop().await);
}

/// A client that disconnects while its booking is in its hold: the booking still completes
/// whole (it runs in a task of its own) — the counter equals the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_booking_leaves_a_whole_booking() {
    let mut server = Server::start(Mode::Locked, 600).await;
    let request = common::client()
        .post(format!("{}/api/bookings", server.base))
        .json(&booking(1))
        .send();
    // Gone after 150 ms: the booking is in its 600 ms hold.
    assert!(
        tokio::time::timeout(Duration::from_millis(150), request)
            .await
            .is_err()
    );
    assert!(
        server.stop().await,
        "the shutdown waited for the orphaned booking"
    );
    assert_eq!(server.reference_slot().await, (1, 1, 1));
}

/// The server's own limits: beyond `--max-in-flight` a booking is answered 503 at once, and a
/// booking that outlasts `--booking-timeout` is answered 503 — both problem+json with
/// `Retry-After`, never a queue without bound or a hung client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_cap_and_the_booking_deadline_answer_503() {
    let mut server = Server::start_with(
        1_000,
        ServeSettings {
            booking_timeout: Duration::from_millis(400),
            max_in_flight: 1,
            ..ServeSettings::new(Mode::Atomic)
        },
    )
    .await;
    let client = common::client();
    let url = format!("{}/api/bookings", server.base);
    let first = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { client.post(&url).json(&booking(2)).send().await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = client.post(&url).json(&booking(2)).send().await.unwrap();
    assert_eq!(second.status(), 503, "beyond the cap");
    assert!(second.headers().contains_key("retry-after"));
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["type"], "/problems/busy", "{body}");
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 503, "past the booking deadline");
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["type"], "/problems/booking-timeout", "{body}");
    // The booking itself was not cut half-way: it completed after its answer.
    assert!(server.stop().await);
    let night = server
        .repo
        .slot_state(
            booking_cli::domain::RoomId::new(2).unwrap(),
            &booking_cli::domain::Stay::nights_from("2024-12-25".parse().unwrap(), 1).unwrap(),
        )
        .await
        .unwrap()[0];
    assert_eq!((night.booked_count, night.confirmed_bookings), (1, 1));
}

// ---------------------------------------------------------------------------------------------
// The binary: `serve` processes raced by `stress --target`, and stopped by SIGTERM.

#[test]
fn stress_target_reproduces_the_race_and_the_fix_over_http() {
    // One reservation for both databases (the second run holds 3 connections; see below).
    let cli = Cli::with_budget(common::SEEDED_POOL + 4);
    cli.reset();
    let server = ServeProcess::start(&cli, &["--mode", "locked"]);
    let locked = cli.run(&[
        "stress",
        "--target",
        &server.base,
        "--mode",
        "locked",
        "--json",
    ]);
    assert_eq!(locked.status.code(), Some(0), "{}", text(&locked.stderr));
    let body = json(&locked);
    assert_eq!(body["status_codes"]["201"], 1, "{body}");
    let refused = body["status_codes"]["409"].as_u64().unwrap_or(0)
        + body["status_codes"]["503"].as_u64().unwrap_or(0);
    assert_eq!(refused, 19, "{body}");
    assert_eq!(body["transport_errors"], 0);
    assert_eq!(cli.reference_slot(), (1, 1, 1));

    let naive = cli.run(&[
        "stress",
        "--target",
        &server.base,
        "--mode",
        "naive",
        "--json",
    ]);
    assert_eq!(naive.status.code(), Some(0), "{}", text(&naive.stderr));
    let body = json(&naive);
    assert_eq!(body["overbooked"], true, "{body}");
    let (total, booked, rows) = cli.reference_slot();
    assert!(booked > total && rows > total, "{total}/{booked}/{rows}");

    // A DATABASE_URL that is not the server's is said, and the run writes nothing.
    let other = Cli::with_budget(0);
    other.reset();
    let before = other.snapshot();
    let out = other.run(&[
        "stress",
        "--target",
        &server.base,
        "--mode",
        "locked",
        "--inventory",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("DATABASE_URL must reach the database of the server"));
    assert_eq!(other.snapshot(), before);
    let (status, _) = server.terminate();
    assert_eq!(status, Some(0));
}

/// The false green of a gate: the server writes to one database, the run reads another that
/// looks the same (the same seed). Every booking the server acknowledged is missing there, so
/// the verdict is UNACCOUNTED and the gate fails — never SAFE.
#[test]
fn stress_target_reading_another_database_is_unaccounted_not_safe() {
    // One reservation for both databases (the reader's run holds 3 connections): two tests
    // that each hold half the budget and wait for more would wait for each other forever.
    let server_db = Cli::with_budget(common::SEEDED_POOL + 4);
    server_db.reset();
    let server = ServeProcess::start(&server_db, &["--mode", "naive"]);
    let reader = Cli::with_budget(0);
    reader.reset();
    let out = reader.run(&["stress", "--target", &server.base, "--mode", "naive"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Verdict: UNACCOUNTED"), "{stdout}");
    assert!(
        stdout.contains("the server does not write where DATABASE_URL points"),
        "{stdout}"
    );
    let (_, booked, rows) = server_db.reference_slot();
    assert!(
        booked > 1 && rows > 1,
        "the server's own database was overbooked"
    );
    assert_eq!(
        reader.reference_slot(),
        (1, 0, 0),
        "nothing in the one read"
    );
    // Now that the two databases differ, the check before the run sees it: nothing written.
    let out = reader.run(&["stress", "--target", &server.base, "--mode", "locked"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("DATABASE_URL must reach the database of the server"));
    assert_eq!(server.terminate().0, Some(0));
}

/// `race` with serve's template and booking-cli's own invariant gives the verdict `stress
/// --target` gives: naive violated, locked held.
#[test]
fn race_against_serve_agrees_with_stress_target() {
    let cli = Cli::new();
    cli.reset();
    let server = ServeProcess::start(&cli, &["--mode", "locked"]);
    let race = |mode: &str| {
        let header = format!("X-Booking-Mode: {mode}");
        let out = common::serve_race(
            &cli,
            &server.base,
            &["-H", &header, "--expect", "any", "--json"],
        )
        .output()
        .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        json(&out)
    };
    let naive = race("naive");
    assert_eq!(naive["verdict"], "VIOLATED", "{naive}");
    assert_eq!(naive["successes"], 20, "{naive}");
    assert_eq!(naive["counted"], 20, "every 201 is a row: {naive}");
    let stress_naive = json(&cli.run(&[
        "stress",
        "--target",
        &server.base,
        "--mode",
        "naive",
        "--json",
    ]));
    assert_eq!(stress_naive["verdict"], "OVERBOOKED", "{stress_naive}");

    let locked = race("locked");
    assert_eq!(locked["verdict"], "HELD", "{locked}");
    assert_eq!(locked["successes"], 1, "{locked}");
    assert_eq!(locked["counted"], 1, "{locked}");
    let stress_locked = json(&cli.run(&[
        "stress",
        "--target",
        &server.base,
        "--mode",
        "locked",
        "--json",
    ]));
    assert_eq!(stress_locked["verdict"], "SAFE", "{stress_locked}");
    assert_eq!(server.terminate().0, Some(0));
}

/// Three replicas share one PostgreSQL and one Redis: an in-process mutex protects nothing
/// across them, the Redis lock does.
#[test]
fn across_three_replicas_mutex_overbooks_and_locked_holds() {
    let cli = Cli::with_budget(30);
    cli.reset();
    let replicas: Vec<ServeProcess> = (0..3)
        .map(|_| ServeProcess::start(&cli, &["--mode", "locked", "--max-in-flight", "8"]))
        .collect();
    let targets = replicas
        .iter()
        .map(|r| r.base.clone())
        .collect::<Vec<_>>()
        .join(",");
    let mutex = cli.run(&["stress", "--target", &targets, "--mode", "mutex", "--json"]);
    assert_eq!(mutex.status.code(), Some(0), "{}", text(&mutex.stderr));
    let (_, booked, rows) = cli.reference_slot();
    assert_eq!((booked, rows), (3, 3), "one booking per replica's mutex");

    let locked = cli.run(&["stress", "--target", &targets, "--mode", "locked", "--json"]);
    assert_eq!(locked.status.code(), Some(0), "{}", text(&locked.stderr));
    assert_eq!(cli.reference_slot(), (1, 1, 1));
    for replica in replicas {
        assert_eq!(replica.terminate().0, Some(0));
    }
}

/// SIGTERM while 10 bookings are in flight: every client gets a response, the server exits 0,
/// no lock key is left and the counter equals the rows.
#[test]
fn sigterm_with_ten_bookings_in_flight_answers_them_all_and_exits_0() {
    let cli = Cli::new();
    cli.reset();
    // The hold outlasts the wait below by far: on a loaded machine (the whole suite at once, a
    // debug build) a client thread can take a few hundred milliseconds to connect.
    let server = ServeProcess::start(&cli, &["--mode", "locked", "--hold-ms", "1500"]);
    let base = server.base.clone();
    let clients: Vec<_> = (0..10)
        .map(|i| {
            let url = format!("{base}/api/bookings");
            std::thread::spawn(move || {
                block_on(async move {
                    common::client()
                        .post(&url)
                        .json(&booking(1 + i % 2))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                })
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let (status, stderr) = server.terminate();
    let answers: Vec<_> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    assert!(
        answers.iter().all(Result::is_ok),
        "every client gets a response: {answers:?}"
    );
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        stderr.contains("every booking in flight finished"),
        "{stderr}"
    );
    let (_, booked, rows) = cli.reference_slot();
    assert_eq!(booked, rows, "counter = rows");
    let leftover = block_on(async {
        booking_cli::lock::RedisLock::connect(&redis_url(), &cli.prefix)
            .await
            .expect("redis")
            .leftover_keys()
            .await
            .expect("scan")
    });
    assert!(leftover.is_empty(), "{leftover:?}");
}
