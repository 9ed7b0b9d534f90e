//! `race` against a booking service shaped nothing like `serve`: its own path (`/v1/orders`),
//! its own body fields (`customer`, `sku`), its own statuses (200 sold, 410 gone) and its own
//! schema (`shop.stock`, `shop.orders`), running inside the test on a database of the test's
//! own. The verdicts come from that database, through the checks the test gives `race`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::{json, text};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::migrate::MigrateDatabase;
use tokio::sync::Barrier;

/// How the shop sells.
#[derive(Clone, Copy, PartialEq)]
enum Shop {
    /// Check, then write: `SELECT sold, capacity`, then `UPDATE … sold + 1` and `INSERT`.
    Naive,
    /// One conditional statement: `UPDATE … WHERE sold < capacity RETURNING`, then `INSERT`.
    Conditional,
    /// Answers 200 and writes nothing.
    Liar,
}

#[derive(Clone)]
struct ShopState {
    pool: PgPool,
    shop: Shop,
    /// When set, every request waits here after its check (naive) or before its statement
    /// (conditional), so that all of them have read before any writes: the race is certain.
    gate: Option<Arc<Barrier>>,
    /// Requests received, to prove that bad input sent nothing.
    received: Arc<AtomicU32>,
}

async fn order(
    State(state): State<ShopState>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    state.received.fetch_add(1, Ordering::SeqCst);
    let sku = body["sku"].as_i64().unwrap_or(0) as i32;
    let customer = body["customer"].as_str().unwrap_or("").to_owned();
    let gone = (StatusCode::GONE, Json(json!({"error": "gone"})));
    match state.shop {
        Shop::Liar => (StatusCode::OK, Json(json!({"order": 0}))),
        Shop::Naive => {
            let (sold, capacity): (i32, i32) =
                sqlx::query_as("SELECT sold, capacity FROM shop.stock WHERE sku = $1")
                    .bind(sku)
                    .fetch_one(&state.pool)
                    .await
                    .expect("read stock");
            if let Some(gate) = &state.gate {
                gate.wait().await;
            }
            if sold >= capacity {
                return gone;
            }
            sqlx::query("UPDATE shop.stock SET sold = sold + 1 WHERE sku = $1")
                .bind(sku)
                .execute(&state.pool)
                .await
                .expect("update");
            insert(&state.pool, sku, &customer).await
        }
        Shop::Conditional => {
            if let Some(gate) = &state.gate {
                gate.wait().await;
            }
            let taken: Option<i32> = sqlx::query_scalar(
                "UPDATE shop.stock SET sold = sold + 1 WHERE sku = $1 AND sold < capacity RETURNING sku",
            )
            .bind(sku)
            .fetch_optional(&state.pool)
            .await
            .expect("update");
            match taken {
                Some(_) => insert(&state.pool, sku, &customer).await,
                None => gone,
            }
        }
    }
}

async fn insert(pool: &PgPool, sku: i32, customer: &str) -> (StatusCode, Json<Value>) {
    let id: i32 =
        sqlx::query_scalar("INSERT INTO shop.orders (sku, customer) VALUES ($1, $2) RETURNING id")
            .bind(sku)
            .bind(customer)
            .fetch_one(pool)
            .await
            .expect("insert");
    (StatusCode::OK, Json(json!({"order": id})))
}

/// The shop, on a database of its own, listening on a free port.
struct ShopServer {
    db: common::TestDb,
    base: String,
    received: Arc<AtomicU32>,
    pool: PgPool,
}

impl ShopServer {
    async fn start(shop: Shop, gate: Option<u32>) -> Self {
        let mut db = common::TestDb::unique_url();
        db.budget = Some(common::reserve(24));
        sqlx::Postgres::create_database(&db.url)
            .await
            .expect("create");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(20)
            .connect(&db.url)
            .await
            .expect("connect");
        sqlx::raw_sql(
            "CREATE SCHEMA shop;
             CREATE TABLE shop.stock (sku int PRIMARY KEY, capacity int NOT NULL, sold int NOT NULL);
             CREATE TABLE shop.orders (id serial PRIMARY KEY, sku int NOT NULL, customer text NOT NULL);
             CREATE SEQUENCE shop.tickets;
             INSERT INTO shop.stock VALUES (42, 1, 0);",
        )
        .execute(&pool)
        .await
        .expect("schema");
        let received = Arc::new(AtomicU32::new(0));
        let state = ShopState {
            pool: pool.clone(),
            shop,
            gate: gate.map(|n| Arc::new(Barrier::new(n as usize))),
            received: Arc::clone(&received),
        };
        let app = axum::Router::new()
            .route("/v1/orders", post(order))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            db,
            base,
            received,
            pool,
        }
    }

    /// `race` with the shop's template and invariant, and `extra` flags.
    async fn race(&self, extra: &[&str]) -> std::process::Output {
        let mut args: Vec<String> = [
            "race",
            "--url",
            &format!("{}/v1/orders", self.base),
            "-d",
            r#"{"customer": "c-{{user}}-{{uuid}}", "sku": 42}"#,
            "--success",
            "200",
            "--setup",
            "UPDATE shop.stock SET sold = 0, capacity = 1 WHERE sku = 42; DELETE FROM shop.orders WHERE sku = 42",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let url = self.db.url.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_booking-cli"))
                .args(&args)
                .env("CHECK_DATABASE_URL", url)
                .env("NO_COLOR", "1")
                .env_remove("RUST_LOG")
                .output()
                .expect("the binary runs")
        })
        .await
        .expect("joined")
    }

    async fn orders(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM shop.orders")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}

/// Rows per sku against its capacity: the shape "rows per slot vs capacity".
const OVERSOLD: &str = "SELECT s.sku, s.capacity, count(o.id) AS orders FROM shop.stock s \
     JOIN shop.orders o USING (sku) GROUP BY s.sku, s.capacity HAVING count(o.id) > s.capacity";
const COUNT: &str = "SELECT count(*) FROM shop.orders WHERE sku = 42";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_naive_shop_is_violated_with_its_rows_printed_and_a_held_gate_fails() {
    // Every request reads before any writes: the race is certain, not likely.
    let shop = ShopServer::start(Shop::Naive, Some(20)).await;
    let out = shop
        .race(&[
            "--check", OVERSOLD, "--count", COUNT, "--expect", "violated",
        ])
        .await;
    let stdout = text(&out.stdout);
    eprintln!("{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Verdict: VIOLATED"), "{stdout}");
    assert!(stdout.contains("[200] 20 responses"), "{stdout}");
    // The violating row, with the check's own columns.
    assert!(stdout.contains("│ sku ┆ capacity ┆ orders │"), "{stdout}");
    assert!(stdout.contains("│ 42  ┆        1 ┆     20 │"), "{stdout}");
    assert!(stdout.contains("20 written; 20 acknowledged"), "{stdout}");

    let out = shop.race(&["--check", OVERSOLD, "--json"]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "the gate: held expected, not met"
    );
    let body = json(&out);
    assert_eq!(body["verdict"], "VIOLATED");
    assert_eq!(body["successes"], 20);
    assert_eq!(body["status_codes"]["200"], 20);
    assert_eq!(body["transport_errors"], 0);
    assert_eq!(body["violations"][0]["row"]["orders"], 20, "{body}");
    assert_eq!(body["violations"][0]["row"]["sku"], 42, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_naive_shop_without_any_gate_is_caught_over_twenty_runs() {
    // No sleep, no gate: the window is the gap between a read and a write.
    let shop = ShopServer::start(Shop::Naive, None).await;
    let out = shop
        .race(&[
            "--check", OVERSOLD, "--count", COUNT, "--repeat", "20", "--expect", "violated",
            "--json",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body = json(&out);
    let violated = body["verdict_counts"]["VIOLATED"].as_u64().unwrap_or(0);
    eprintln!("naive shop, no gate: {}", body["verdict_counts"]);
    assert!(violated >= 1, "{body}");
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(20));
    assert_eq!(
        body["verdict"], "VIOLATED",
        "the first counterexample is shown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_update_holds_every_run() {
    let shop = ShopServer::start(Shop::Conditional, Some(20)).await;
    // A check may end in a `--` comment, as SQL pasted from a file often does.
    let commented = format!("{OVERSOLD} -- oversold skus");
    let out = shop
        .race(&[
            "--check",
            &commented,
            "--count",
            COUNT,
            "--max-successes",
            "1",
            "--repeat",
            "20",
        ])
        .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("Verdicts over 20 runs: HELD 20/20 — expected held: met"),
        "{stdout}"
    );
    assert_eq!(shop.orders().await, 1, "one sold in the last run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_that_answers_200_and_writes_nothing_is_unaccounted() {
    let shop = ShopServer::start(Shop::Liar, None).await;
    let out = shop
        .race(&["--count", COUNT, "--max-successes", "20"])
        .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Verdict: UNACCOUNTED"), "{stdout}");
    assert!(
        stdout.contains("0 written; 20 acknowledged — UNACCOUNTED"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_writes_changes_nothing_and_bad_input_sends_nothing() {
    let shop = ShopServer::start(Shop::Conditional, None).await;
    sqlx::raw_sql("INSERT INTO shop.orders (sku, customer) VALUES (7, 'kept'); UPDATE shop.stock SET sold = 5")
        .execute(&shop.pool)
        .await
        .expect("rows to keep");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["--check".into(), "DELETE FROM shop.orders".into()],
            2,
            "--check 1 failed on the check database",
        ),
        // Through a function, the READ ONLY transaction refuses the write.
        (
            vec!["--check".into(), "SELECT nextval('shop.tickets')".into()],
            2,
            "read-only transaction",
        ),
        (
            vec![
                "--check".into(),
                OVERSOLD.into(),
                "-H".into(),
                "X-Trace: {{nope}}".into(),
            ],
            2,
            "unknown placeholder {{nope}}",
        ),
        // A COMMIT inside the setup would make its writes stick before the trial refuses.
        (
            vec![
                "--check".into(),
                OVERSOLD.into(),
                "--setup".into(),
                "UPDATE shop.stock SET sold = 0 WHERE sku = 42; COMMIT".into(),
            ],
            2,
            "'COMMIT' ends or opens a transaction",
        ),
        (
            vec![
                "--check".into(),
                OVERSOLD.into(),
                "--check-db".into(),
                "mysql://root@127.0.0.1/shop".into(),
            ],
            2,
            "--check-db must be a PostgreSQL URL",
        ),
    ];
    for (extra, status, says) in cases {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let out = shop.race(&extra).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{extra:?}: {stderr}");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    }
    assert_eq!(shop.received.load(Ordering::SeqCst), 0, "nothing was sent");
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM shop.orders WHERE sku = 7")
        .fetch_one(&shop.pool)
        .await
        .expect("count");
    assert_eq!(kept, 1, "the check that deletes deleted nothing");
    let sold: i32 = sqlx::query_scalar("SELECT sold FROM shop.stock WHERE sku = 42")
        .fetch_one(&shop.pool)
        .await
        .expect("stock");
    assert_eq!(
        sold, 5,
        "bad input ran no --setup either (it would have put sold back to 0), COMMIT or not"
    );
    let ticket: i64 = sqlx::query_scalar("SELECT nextval('shop.tickets')")
        .fetch_one(&shop.pool)
        .await
        .expect("nextval");
    assert_eq!(ticket, 1, "the sequence was never advanced by a check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_check_db_and_an_unreachable_endpoint_are_one_line() {
    let out = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_booking-cli"))
            .args([
                "race",
                "--url",
                "http://127.0.0.1:9/x",
                "--check",
                "select 1",
            ])
            .env_remove("CHECK_DATABASE_URL")
            .output()
            .expect("runs")
    })
    .await
    .expect("joined");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--check needs --check-db"),
        "{}",
        text(&out.stderr)
    );

    // Nothing listens on the port: a runtime error, before any request.
    let port = common::free_port();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_booking-cli"))
            .args([
                "race",
                "--url",
                &format!("http://127.0.0.1:{port}/x"),
                "--max-successes",
                "1",
            ])
            .output()
            .expect("runs")
    })
    .await
    .expect("joined");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to 127.0.0.1:"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
