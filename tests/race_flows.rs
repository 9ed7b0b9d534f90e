//! `race` on the flows people really run, each against a service of the test's own on a
//! database of its own:
//!
//! - a ticket shop of the most common kind: `POST /login` sets a session cookie, the event
//!   page carries a per-session CSRF token in its form, `POST /events/7/buy` answers `302` to
//!   `/orders/<id>` on a sale and `302` to `/sold-out` when it is gone — raced by twenty
//!   users, each logged in as themselves (`users-file`, `[[prepare]]`), success told by
//!   `Location`;
//! - a bank whose two endpoints, `/withdraw` and `/transfer`, each check the balance before
//!   they take from it: one user's two requests released together (the multi-endpoint race);
//! - an API with two endpoints raced in one burst by different users (`[[request]]`).
//!
//! Every race is made certain by a gate in the handler: each request waits there, after its
//! read, until all the requests of the burst have read (or a short time has passed, for
//! requests sent one after the other).

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::{json, text};
use serde_json::json;
use sqlx::PgPool;
use sqlx::migrate::MigrateDatabase;
use tokio::sync::Notify;

/// Every request waits here until `n` have come (or `limit` has passed): a read made before
/// it is made by all before any writes.
struct Gate {
    n: usize,
    limit: Duration,
    state: Mutex<(usize, u64)>,
    all_in: Notify,
}

impl Gate {
    fn new(n: usize, limit: Duration) -> Arc<Self> {
        Arc::new(Self {
            n,
            limit,
            state: Mutex::new((0, 0)),
            all_in: Notify::new(),
        })
    }

    async fn wait(&self) {
        // Registered before it counts itself: the last one in cannot wake it too early.
        let all_in = self.all_in.notified();
        tokio::pin!(all_in);
        all_in.as_mut().enable();
        let generation = {
            let mut state = self.state.lock().unwrap();
            state.0 += 1;
            if state.0 >= self.n {
                *state = (0, state.1 + 1);
                self.all_in.notify_waiters();
                return;
            }
            state.1
        };
        if tokio::time::timeout(self.limit, all_in).await.is_err() {
            let mut state = self.state.lock().unwrap();
            if state.1 == generation {
                state.0 = state.0.saturating_sub(1);
            }
        }
    }
}

#[derive(Clone, Default)]
struct Session {
    user: Option<String>,
    csrf: String,
}

#[derive(Clone)]
struct Shop {
    pool: PgPool,
    /// The fixed shop sells with one conditional statement; the naive one reads, then writes.
    fixed: bool,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    /// The session of every buy request that reached the sale.
    buyers: Arc<Mutex<Vec<String>>>,
    /// Requests of any kind, to prove that nothing was raced.
    received: Arc<AtomicU32>,
    buy_gate: Arc<Gate>,
    bank_gate: Arc<Gate>,
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("session=").map(str::to_owned))
}

fn redirect(to: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to.to_owned())]).into_response()
}

/// A form body, as `application/x-www-form-urlencoded` carries it.
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn login(State(shop): State<Shop>, body: axum::body::Bytes) -> Response {
    shop.received.fetch_add(1, Ordering::SeqCst);
    let form = parse_form(&body);
    let username = form.get("username").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    if password != format!("pw-{}", username.trim_start_matches("user")) {
        return (StatusCode::FORBIDDEN, "bad credentials").into_response();
    }
    let sid = uuid::Uuid::new_v4().simple().to_string();
    shop.sessions.lock().unwrap().insert(
        sid.clone(),
        Session {
            user: Some(username),
            csrf: uuid::Uuid::new_v4().simple().to_string(),
        },
    );
    let mut response = redirect("/");
    response.headers_mut().insert(
        header::SET_COOKIE,
        format!("session={sid}; Path=/; HttpOnly").parse().unwrap(),
    );
    response
}

/// The event page: a form with the session's CSRF token (an anonymous session if none).
async fn event_page(State(shop): State<Shop>, headers: HeaderMap) -> Response {
    shop.received.fetch_add(1, Ordering::SeqCst);
    let mut sessions = shop.sessions.lock().unwrap();
    let (sid, fresh) = match session_of(&headers).filter(|s| sessions.contains_key(s)) {
        Some(sid) => (sid, false),
        None => {
            let sid = uuid::Uuid::new_v4().simple().to_string();
            sessions.insert(
                sid.clone(),
                Session {
                    user: None,
                    csrf: uuid::Uuid::new_v4().simple().to_string(),
                },
            );
            (sid, true)
        }
    };
    let csrf = sessions[&sid].csrf.clone();
    let page = format!(
        "<html><body><h1>Concert</h1><form method=\"post\" action=\"/events/7/buy\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button>Buy</button></form></body></html>"
    );
    let mut response =
        (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], page).into_response();
    if fresh {
        response.headers_mut().insert(
            header::SET_COOKIE,
            format!("session={sid}; Path=/; HttpOnly").parse().unwrap(),
        );
    }
    response
}

async fn buy(State(shop): State<Shop>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    shop.received.fetch_add(1, Ordering::SeqCst);
    let form = parse_form(&body);
    let Some(sid) = session_of(&headers) else {
        return (StatusCode::FORBIDDEN, "no session").into_response();
    };
    let Some(session) = shop.sessions.lock().unwrap().get(&sid).cloned() else {
        return (StatusCode::FORBIDDEN, "no session").into_response();
    };
    if form.get("csrf") != Some(&session.csrf) {
        return (StatusCode::FORBIDDEN, "CSRF token missing or wrong").into_response();
    }
    let Some(user) = session.user else {
        return redirect("/login");
    };
    shop.buyers.lock().unwrap().push(sid);
    let sold = if shop.fixed {
        shop.buy_gate.wait().await;
        sqlx::query_scalar::<_, i32>(
            "UPDATE shop.events SET sold = sold + 1 WHERE id = 7 AND sold < capacity RETURNING id",
        )
        .fetch_optional(&shop.pool)
        .await
        .unwrap()
        .is_some()
    } else {
        let (sold, capacity): (i32, i32) =
            sqlx::query_as("SELECT sold, capacity FROM shop.events WHERE id = 7")
                .fetch_one(&shop.pool)
                .await
                .unwrap();
        shop.buy_gate.wait().await;
        if sold < capacity {
            sqlx::query("UPDATE shop.events SET sold = sold + 1 WHERE id = 7")
                .execute(&shop.pool)
                .await
                .unwrap();
        }
        sold < capacity
    };
    if !sold {
        return redirect("/sold-out");
    }
    let id: i32 =
        sqlx::query_scalar("INSERT INTO shop.orders (event, buyer) VALUES (7, $1) RETURNING id")
            .bind(user)
            .fetch_one(&shop.pool)
            .await
            .unwrap();
    redirect(&format!("/orders/{id}"))
}

/// `/withdraw` and `/transfer` alike: read the balance, then take the amount from it.
async fn take(State(shop): State<Shop>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    shop.received.fetch_add(1, Ordering::SeqCst);
    let form = parse_form(&body);
    let user = session_of(&headers)
        .and_then(|sid| shop.sessions.lock().unwrap().get(&sid).cloned())
        .and_then(|s| s.user);
    let Some(user) = user else {
        return (StatusCode::UNAUTHORIZED, "log in first").into_response();
    };
    let amount: i32 = form.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
    let balance: i32 = sqlx::query_scalar("SELECT balance FROM shop.accounts WHERE username = $1")
        .bind(&user)
        .fetch_one(&shop.pool)
        .await
        .unwrap();
    shop.bank_gate.wait().await;
    if balance < amount {
        return (StatusCode::CONFLICT, "insufficient funds").into_response();
    }
    sqlx::query("UPDATE shop.accounts SET balance = balance - $1 WHERE username = $2")
        .bind(amount)
        .bind(&user)
        .execute(&shop.pool)
        .await
        .unwrap();
    (StatusCode::OK, Json(json!({"taken": amount}))).into_response()
}

/// The API: `book` sells as the shop does (201, or 409 when gone); `waitlist` always takes
/// the name (202).
async fn api_book(State(shop): State<Shop>) -> Response {
    shop.received.fetch_add(1, Ordering::SeqCst);
    let taken = sqlx::query_scalar::<_, i32>(
        "UPDATE shop.events SET sold = sold + 1 WHERE id = 7 AND sold < capacity RETURNING id",
    )
    .fetch_optional(&shop.pool)
    .await
    .unwrap();
    match taken {
        Some(_) => (StatusCode::CREATED, Json(json!({"booked": true}))).into_response(),
        None => (StatusCode::CONFLICT, Json(json!({"error": "sold out"}))).into_response(),
    }
}

async fn api_waitlist(State(shop): State<Shop>) -> Response {
    shop.received.fetch_add(1, Ordering::SeqCst);
    (StatusCode::ACCEPTED, Json(json!({"waitlisted": true}))).into_response()
}

/// The shop on a database of its own, listening on a free port, and a directory for the
/// race's files.
struct ShopServer {
    db: common::TestDb,
    base: String,
    shop: Shop,
    dir: tempfile::TempDir,
}

impl ShopServer {
    async fn start(fixed: bool, buyers_at_once: usize) -> Self {
        let mut db = common::TestDb::unique_url();
        // The shop's pool, and the binary's check database connection.
        db.budget = Some(common::reserve(12));
        sqlx::Postgres::create_database(&db.url).await.unwrap();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .connect(&db.url)
            .await
            .unwrap();
        let mut schema = String::from(
            "CREATE SCHEMA shop;
             CREATE TABLE shop.events (id int PRIMARY KEY, capacity int NOT NULL, sold int NOT NULL);
             CREATE TABLE shop.orders (id serial PRIMARY KEY, event int NOT NULL, buyer text NOT NULL);
             CREATE TABLE shop.accounts (username text PRIMARY KEY, balance int NOT NULL);
             INSERT INTO shop.events VALUES (7, 5, 0);",
        );
        for i in 0..20 {
            schema.push_str(&format!(
                "INSERT INTO shop.accounts VALUES ('user{i}', 100);"
            ));
        }
        sqlx::raw_sql(&schema).execute(&pool).await.unwrap();
        let shop = Shop {
            pool,
            fixed,
            sessions: Arc::default(),
            buyers: Arc::default(),
            received: Arc::default(),
            buy_gate: Gate::new(buyers_at_once, Duration::from_secs(2)),
            bank_gate: Gate::new(2, Duration::from_millis(300)),
        };
        let app = axum::Router::new()
            .route("/login", post(login))
            .route("/events/7", get(event_page))
            .route("/events/7/buy", post(buy))
            .route("/withdraw", post(take))
            .route("/transfer", post(take))
            .route("/api/events/7/book", post(api_book))
            .route("/api/events/7/waitlist", post(api_waitlist))
            .with_state(shop.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dir = tempfile::tempdir().unwrap();
        let mut users = String::from("username,password\n");
        for i in 0..20 {
            users.push_str(&format!("user{i},pw-{i}\n"));
        }
        std::fs::write(dir.path().join("users.csv"), users).unwrap();
        Self {
            db,
            base,
            shop,
            dir,
        }
    }

    /// Writes `body` to `name` in the race's directory (beside `users.csv`).
    fn file(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    /// The shop's race: log in from users.csv (unless `login` is false), fetch the event page
    /// for its CSRF token, buy with it; success is a 302 to an order.
    fn shop_config(&self, login: bool, success: &str) -> PathBuf {
        let base = &self.base;
        let login_step = if login {
            format!(
                r#"
[[prepare]]
name = "login"
method = "POST"
url = "{base}/login"
form = {{ username = "{{{{username}}}}", password = "{{{{password}}}}" }}
expect = [302]
"#
            )
        } else {
            String::new()
        };
        self.file(
            "shop.toml",
            &format!(
                r#"
url = "{base}/events/7/buy"
form = {{ csrf = "{{{{csrf}}}}" }}
users = 20
users-file = "users.csv"
success = {success}
setup = ["UPDATE shop.events SET sold = 0, capacity = 5; DELETE FROM shop.orders"]
check = ["SELECT id, sold, capacity FROM shop.events WHERE sold > capacity"]
count = "SELECT count(*) FROM shop.orders"
{login_step}
[[prepare]]
name = "event page"
url = "{base}/events/7"
expect = [200]
extract.csrf = {{ regex = 'name="csrf" value="([0-9a-f]+)"' }}
"#
            ),
        )
    }

    async fn race(&self, args: &[&str]) -> std::process::Output {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let url = self.db.url.clone();
        tokio::task::spawn_blocking(move || {
            let mut args = args;
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_booking-cli"));
            if std::env::var("DEBUG_RACE").is_ok() {
                args.push("-vv".into());
                command.stderr(std::fs::File::create("/tmp/w/race-stderr.txt").unwrap());
            }
            command
                .args(&args)
                .env("CHECK_DATABASE_URL", url)
                .env("NO_COLOR", "1")
                .env_remove("RUST_LOG")
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.shop.pool)
            .await
            .unwrap()
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logged_in_naive_shop_oversells_and_the_fixed_one_accounts_for_every_sale() {
    let location = r#"{ status = [302], header = { Location = "^/orders/" } }"#;
    // One shop at a time: a test never holds two shares of the connection budget.
    {
        let naive = ShopServer::start(false, 20).await;
        let config = naive.shop_config(true, location);
        let out = naive
            .race(&[
                "race",
                "--config",
                path(&config),
                "--repeat",
                "10",
                "--expect",
                "violated",
            ])
            .await;
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}\n{}",
            text(&out.stderr)
        );
        println!("{stdout}");
        assert!(stdout.contains("VIOLATED"), "{stdout}");
        assert!(
            stdout.contains("each logged in by 2 [[prepare]] step(s)"),
            "{stdout}"
        );
        // Every burst request carried a session of its own: 20 per run, fresh each run.
        let buyers = naive.shop.buyers.lock().unwrap().clone();
        assert_eq!(buyers.len(), 200, "20 buyers × 10 runs reached the sale");
        assert_eq!(
            buyers.iter().collect::<HashSet<_>>().len(),
            200,
            "the shop saw 20 distinct sessions in each run, none shared"
        );
    }

    let fixed = ShopServer::start(true, 20).await;
    let config = fixed.shop_config(true, location);
    let junit = fixed.dir.path().join("junit.xml");
    let out = fixed
        .race(&[
            "race",
            "--config",
            path(&config),
            "--repeat",
            "10",
            "--json",
            "--junit",
            path(&junit),
        ])
        .await;
    let body = json(&out);
    assert_eq!(out.status.code(), Some(0), "{body}\n{}", text(&out.stderr));
    assert_eq!(body["verdict_counts"], json!({"HELD": 10}), "{body}");
    for run in body["runs"].as_array().unwrap() {
        assert_eq!(run["successes"], 5, "{run}");
        assert_eq!(
            run["counted"], 5,
            "every sale acknowledged is written: {run}"
        );
        assert_eq!(run["status_codes"], json!({"302": 20}), "{run}");
    }
    assert_eq!(fixed.scalar("SELECT count(*) FROM shop.orders").await, 5);
    let buyers = fixed.shop.buyers.lock().unwrap().clone();
    assert_eq!(buyers.iter().collect::<HashSet<_>>().len(), 200);
    let report = std::fs::read_to_string(&junit).unwrap();
    assert!(
        report.contains(r#"<testsuite name="shop""#),
        "the suite is named after the config file: {report}"
    );

    // The guard: told by status alone, both outcomes are successes and the count cannot
    // account for them — the false red the Location pattern removes.
    let config = fixed.shop_config(true, "[302]");
    let out = fixed.race(&["race", "--config", path(&config)]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("UNACCOUNTED"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_login_step_nobody_gets_through_and_the_run_is_untested() {
    let shop = ShopServer::start(true, 20).await;
    let location = r#"{ status = [302], header = { Location = "^/orders/" } }"#;
    let config = shop.shop_config(false, location);
    let out = shop.race(&["race", "--config", path(&config), "-v"]).await;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("UNTESTED"), "{stdout}");
    assert!(stdout.contains("302 × 20"), "{stdout}");
    // -v: each answer, with its Location.
    assert!(
        stderr.contains("user 3 · request: 302 Found · Location: /login"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preparation_that_fails_stops_the_race_before_the_burst_in_one_line() {
    let shop = ShopServer::start(true, 20).await;
    let base = shop.base.clone();
    let location = r#"{ status = [302], header = { Location = "^/orders/" } }"#;
    let good = shop.shop_config(true, location);
    let good = std::fs::read_to_string(good).unwrap();

    // A wrong password for one user: the login answers 403.
    let mut rows = String::from("username,password\n");
    for i in 0..20 {
        let password = if i == 4 {
            "wrong".to_owned()
        } else {
            format!("pw-{i}")
        };
        rows.push_str(&format!("user{i},{password}\n"));
    }
    shop.file("bad-users.csv", &rows);
    let wrong = shop.file(
        "wrong.toml",
        &good.replace(
            "users-file = \"users.csv\"",
            "users-file = \"bad-users.csv\"",
        ),
    );
    let no_token = shop.file(
        "no-token.toml",
        &good.replace("name=\"csrf\"", "name=\"token\""),
    );
    shop.file("short.csv", "username,password\nuser0,pw-0\n");
    let short = shop.file(
        "short.toml",
        &good.replace("users-file = \"users.csv\"", "users-file = \"short.csv\""),
    );
    let unknown = shop.file("unknown.toml", &good.replace("{{csrf}}", "{{csrf_token}}"));
    let cases: [(&Path, i32, &str); 4] = [
        (
            &wrong,
            1,
            &format!(
                "user 4, [[prepare]] 1 (login): POST {base}/login answered 403 Forbidden, expected 302 (nothing was raced)"
            ),
        ),
        (
            &no_token,
            1,
            "[[prepare]] 2 (event page): extract.csrf: regex",
        ),
        (&short, 2, "1 row(s), fewer than --users 20"),
        (&unknown, 2, "unknown placeholder {{csrf_token}}"),
    ];
    for (config, code, says) in cases {
        let before = shop.shop.buyers.lock().unwrap().len();
        let out = shop.race(&["race", "--config", path(config)]).await;
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}: {stderr}",
            config.display()
        );
        assert!(stderr.contains(says), "{}: {stderr}", config.display());
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        assert_eq!(
            shop.shop.buyers.lock().unwrap().len(),
            before,
            "nothing was raced"
        );
        assert!(!stderr.contains("pw-"), "no password shown: {stderr}");
    }
}

/// The bank's race: one user, logged in, sends `/withdraw` and `/transfer` at once.
fn bank_config(shop: &ShopServer) -> PathBuf {
    let base = &shop.base;
    shop.file(
        "bank.toml",
        &format!(
            r#"
users = 1
users-file = "users.csv"
success = [200]
setup = ["UPDATE shop.accounts SET balance = 100"]
check = ["SELECT username, balance FROM shop.accounts WHERE balance < 0"]

[[prepare]]
name = "login"
method = "POST"
url = "{base}/login"
form = {{ username = "{{{{username}}}}", password = "{{{{password}}}}" }}
expect = [302]

[[request]]
name = "withdraw"
url = "{base}/withdraw"
form = {{ amount = "100" }}

[[request]]
name = "transfer"
url = "{base}/transfer"
form = {{ amount = "100", to = "savings" }}
"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_endpoints_of_one_session_released_together_overdraw_what_neither_does_alone() {
    let shop = ShopServer::start(true, 20).await;
    // One after the other, on one logged-in session: the second is refused, nothing broken.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let login = client
        .post(format!("{}/login", shop.base))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("username=user0&password=pw-0")
        .send()
        .await
        .unwrap();
    let cookie = login.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mut statuses = Vec::new();
    for endpoint in ["withdraw", "transfer"] {
        let answer = client
            .post(format!("{}/{endpoint}", shop.base))
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("amount=100")
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
    }
    assert_eq!(
        statuses,
        vec![200, 409],
        "one by one, the second is refused"
    );
    assert_eq!(
        shop.scalar("SELECT min(balance)::bigint FROM shop.accounts")
            .await,
        0
    );

    let config = bank_config(&shop);
    for extra in [
        &["--sync", "last-byte"][..],
        &["--sync", "single-packet", "--http2"],
    ] {
        let mut args = vec![
            "race",
            "--config",
            path(&config),
            "--repeat",
            "10",
            "--expect",
            "violated",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = shop.race(&args).await;
        let body = json(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{extra:?}: {body}\n{}",
            text(&out.stderr)
        );
        assert!(
            body["verdict_counts"]["VIOLATED"].as_u64().unwrap_or(0) >= 1,
            "{extra:?}: {body}"
        );
        let run = &body["runs"][0];
        let names: Vec<&str> = run["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["withdraw", "transfer"], "{run}");
        assert_eq!(run["requests"][0]["sent"], 1, "{run}");
        assert_eq!(run["requests"][1]["sent"], 1, "{run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_of_one_request_and_ten_of_another_in_one_burst_are_reported_by_name() {
    let shop = ShopServer::start(true, 20).await;
    let base = &shop.base;
    let config = shop.file(
        "api.toml",
        &format!(
            r#"
users = 20
setup = ["UPDATE shop.events SET sold = 0, capacity = 5"]
check = ["SELECT id, sold, capacity FROM shop.events WHERE sold > capacity"]

[[request]]
name = "book"
url = "{base}/api/events/7/book"
data = '{{"user": {{{{user}}}}}}'
users = 10
success = [201]

[[request]]
name = "waitlist"
url = "{base}/api/events/7/waitlist"
data = '{{"user": {{{{user}}}}}}'
users = 10
success = [202]
"#
        ),
    );
    let out = shop
        .race(&["race", "--config", path(&config), "--json"])
        .await;
    let body = json(&out);
    assert_eq!(out.status.code(), Some(0), "{body}\n{}", text(&out.stderr));
    assert_eq!(body["verdict"], "HELD", "{body}");
    let requests = &body["requests"];
    assert_eq!(requests[0]["name"], "book", "{body}");
    assert_eq!(requests[0]["sent"], 10);
    assert_eq!(requests[0]["successes"], 5, "{body}");
    assert_eq!(requests[0]["refused"], 5);
    assert_eq!(requests[0]["status_codes"], json!({"201": 5, "409": 5}));
    assert_eq!(requests[1]["name"], "waitlist");
    assert_eq!(requests[1]["sent"], 10);
    assert_eq!(requests[1]["successes"], 10);
    assert_eq!(body["successes"], 15);

    let out = shop.race(&["race", "--config", path(&config)]).await;
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(
        stdout.contains("20 requests in one burst (10 × book"),
        "{stdout}"
    );
    let book_row = stdout
        .lines()
        .find(|l| l.contains("│ book"))
        .unwrap_or_default();
    assert!(book_row.contains("201 × 5, 409 × 5"), "{stdout}");
    let junit = shop.dir.path().join("api.xml");
    let out = shop
        .race(&[
            "race",
            "--config",
            path(&config),
            "--markdown",
            "--junit",
            path(&junit),
            "--name",
            "api burst",
        ])
        .await;
    let markdown = text(&out.stdout);
    assert!(
        markdown.contains("| `waitlist` | 10 | 10 | 0 | 0 |"),
        "{markdown}"
    );
    let report = std::fs::read_to_string(&junit).unwrap();
    assert!(
        report.contains(r#"<testsuite name="api burst""#),
        "{report}"
    );
    assert!(
        report.contains("book: 10 sent, 5 succeeded, 5 refused"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_value_leaves_no_trace_in_the_output() {
    // A session cookie and a CSRF token are credentials: -vv shows the steps, never them.
    let shop = ShopServer::start(true, 20).await;
    let location = r#"{ status = [302], header = { Location = "^/orders/" } }"#;
    let config = shop.shop_config(true, location);
    let out = shop.race(&["race", "--config", path(&config), "-vv"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{stderr}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains("prepare user 0 · 1 (login): 302 Found · Location: /"),
        "{stderr}"
    );
    assert!(stderr.contains("Location: /orders/"), "{stderr}");
    let sessions: Vec<(String, String)> = shop
        .shop
        .sessions
        .lock()
        .unwrap()
        .iter()
        .map(|(sid, s)| (sid.clone(), s.csrf.clone()))
        .collect();
    assert!(!sessions.is_empty());
    for (sid, csrf) in sessions {
        assert!(!stderr.contains(&sid), "a session id printed: {stderr}");
        assert!(!stderr.contains(&csrf), "a CSRF token printed: {stderr}");
    }
    assert!(!stderr.contains("pw-"), "{stderr}");
}

/// A wallet with no database at all: alice holds 100 in memory, each transfer takes 60.
#[derive(Clone)]
struct Wallet {
    balance: Arc<tokio::sync::Mutex<i64>>,
    /// The fixed wallet holds its lock from the read to the write; the naive one reads, waits
    /// at the gate, then writes.
    fixed: bool,
    gate: Arc<Gate>,
}

async fn wallet_transfer(State(wallet): State<Wallet>, _body: axum::body::Bytes) -> Response {
    let refused = (StatusCode::CONFLICT, "insufficient funds").into_response();
    if wallet.fixed {
        let mut balance = wallet.balance.lock().await;
        if *balance < 60 {
            return refused;
        }
        *balance -= 60;
    } else {
        let seen = *wallet.balance.lock().await;
        wallet.gate.wait().await;
        if seen < 60 {
            return refused;
        }
        *wallet.balance.lock().await -= 60;
    }
    (StatusCode::OK, Json(json!({"sent": 60}))).into_response()
}

async fn wallet_account(State(wallet): State<Wallet>) -> Response {
    Json(json!({"name": "alice", "balance": *wallet.balance.lock().await})).into_response()
}

async fn wallet_reset(State(wallet): State<Wallet>) -> Response {
    *wallet.balance.lock().await = 100;
    StatusCode::NO_CONTENT.into_response()
}

/// The wallet on a free port; its base URL and its port.
async fn start_wallet(fixed: bool, users: usize) -> (String, u16) {
    let wallet = Wallet {
        balance: Arc::new(tokio::sync::Mutex::new(100)),
        fixed,
        gate: Gate::new(users, Duration::from_millis(100)),
    };
    let app = axum::Router::new()
        .route("/api/transfer", post(wallet_transfer))
        .route("/api/reset", post(wallet_reset))
        .route("/api/accounts/alice", get(wallet_account))
        .with_state(wallet);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://127.0.0.1:{port}"), port)
}

async fn run_binary(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_booking-cli"))
            .args(&args)
            .env_remove("CHECK_DATABASE_URL")
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// `race` of five transfers at the wallet on `port`, reset before each run through its own
/// endpoint (from sh: no curl needed, bash's /dev/tcp will do), ten runs, `--json`, expecting
/// what the wallet should show; `judges` follow.
async fn wallet_race(
    port: u16,
    fixed: bool,
    judges: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let base = format!("http://127.0.0.1:{port}");
    let reset = format!(
        r#"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && printf "POST /api/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" >&3 && grep -q "204" <&3'"#
    );
    let mut args: Vec<String> = [
        "race",
        "--url",
        &format!("{base}/api/transfer"),
        "-d",
        r#"{"from": "alice", "amount": 60}"#,
        "--users",
        "5",
        "--success",
        "200",
        "--setup-cmd",
        &reset,
        "--repeat",
        "10",
        "--expect",
        if fixed { "held" } else { "violated" },
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(judges.iter().map(|s| s.to_string()));
    let out = run_binary(args).await;
    let body = json(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "fixed {fixed}: {body}\n{}",
        text(&out.stderr)
    );
    (out, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wallet_without_a_database_is_judged_against_its_own_requests_one_by_one() {
    for fixed in [false, true] {
        let (_, port) = start_wallet(fixed, 5).await;
        let (_, body) = wallet_race(port, fixed, &["--baseline", "sequential"]).await;
        assert_eq!(
            body["judged_by"],
            json!(["the same requests one by one (--baseline sequential)"]),
            "no database is claimed: {body}"
        );
        let runs = body["runs"].as_array().unwrap();
        for run in runs {
            assert_eq!(
                run["baseline"]["successes"], 1,
                "one by one, one transfer: {run}"
            );
        }
        if fixed {
            assert_eq!(body["verdict_counts"], json!({"HELD": 10}), "{body}");
        } else {
            assert!(
                body["verdict_counts"]["VIOLATED"].as_u64().unwrap_or(0) >= 1,
                "{body}"
            );
            let violated = runs.iter().find(|r| r["verdict"] == "VIOLATED").unwrap();
            assert!(violated["successes"].as_u64().unwrap() > 1, "{violated}");
        }
    }
    // Without a way back to the start, a baseline is bad input: nothing is sent.
    let (base, _) = start_wallet(false, 5).await;
    refused(
        &base,
        &["--baseline", "sequential"],
        "--baseline sequential needs a way back to the start",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wallet_is_judged_through_its_own_api() {
    for fixed in [false, true] {
        let (base, port) = start_wallet(fixed, 5).await;
        let account = format!("{base}/api/accounts/alice");
        let (_, body) = wallet_race(
            port,
            fixed,
            &[
                "--check-url",
                &account,
                "--check-jq",
                ".balance >= 0",
                "--check-url",
                &account,
                "--check-jq",
                ".balance == $before.balance - 60 * $successes",
            ],
        )
        .await;
        assert_eq!(
            body["judged_by"][0],
            format!("the service's API: GET {account} | jq .balance >= 0"),
            "{body}"
        );
        if fixed {
            assert_eq!(body["verdict_counts"], json!({"HELD": 10}), "{body}");
        } else {
            assert!(
                body["verdict_counts"]["VIOLATED"].as_u64().unwrap_or(0) >= 1,
                "{body}"
            );
            let violated = body["runs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["verdict"] == "VIOLATED")
                .unwrap()
                .clone();
            let shown = violated["violations"][0]["row"]["read"]
                .as_str()
                .unwrap_or("");
            assert!(
                shown.contains("\"balance\":-"),
                "shown with the JSON it read: {violated}"
            );
        }
    }
    // A jq program that cannot run is bad input, before anything is sent.
    let (base, _) = start_wallet(false, 5).await;
    let account = format!("{base}/api/accounts/alice");
    refused(
        &base,
        &["--check-url", &account, "--check-jq", ".balance >="],
        "--check-jq '.balance >=' is not a jq program",
    )
    .await;
    // A state that cannot be read judges nothing: exit 1, never a verdict.
    let out = run_binary(
        [
            "race",
            "--url",
            &format!("{base}/api/transfer"),
            "-d",
            "{}",
            "--check-url",
            &format!("{base}/api/accounts/nobody"),
            "--check-jq",
            ".balance >= 0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("answered 404 Not Found: the state could not be read"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

/// A race at the wallet with `judges` is bad input: exit 2, one line that `says` why.
async fn refused(base: &str, judges: &[&str], says: &str) {
    let mut args = vec![
        "race".to_owned(),
        "--url".to_owned(),
        format!("{base}/api/transfer"),
        "-d".to_owned(),
        "{}".to_owned(),
    ];
    args.extend(judges.iter().map(|s| s.to_string()));
    let out = run_binary(args).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(says), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_that_never_got_through_is_untested_when_its_entry_says_so() {
    // `book` goes to a path the API does not have (404 × 10): the other request's ten
    // successes make the burst look tested — unless `book` says how many of its own must get
    // through.
    let shop = ShopServer::start(true, 20).await;
    let base = &shop.base;
    let config = |min: &str| {
        format!(
            r#"
users = 20
setup = ["UPDATE shop.events SET sold = 0, capacity = 5"]
check = ["SELECT id, sold, capacity FROM shop.events WHERE sold > capacity"]

[[request]]
name = "book"
url = "{base}/api/events/7/no-such-book"
data = '{{}}'
users = 10
success = [201]
{min}

[[request]]
name = "waitlist"
url = "{base}/api/events/7/waitlist"
data = '{{}}'
users = 10
success = [202]
"#
        )
    };
    let loose = shop.file("loose.toml", &config(""));
    let out = shop
        .race(&["race", "--config", path(&loose), "--json"])
        .await;
    let body = json(&out);
    assert_eq!(body["verdict"], "HELD", "without the key: {body}");
    let strict = shop.file("strict.toml", &config("min-successes = 1"));
    let out = shop
        .race(&["race", "--config", path(&strict), "--json"])
        .await;
    let body = json(&out);
    assert_eq!(out.status.code(), Some(3), "{body}");
    assert_eq!(body["verdict"], "UNTESTED", "{body}");
    let caveat = body["caveat"].as_str().unwrap_or_default();
    assert!(
        caveat.contains("request book: 0 succeeded, fewer than its min-successes 1"),
        "{caveat}"
    );
    assert_eq!(
        body["requests"][0]["status_codes"],
        json!({"404": 10}),
        "{body}"
    );
}
