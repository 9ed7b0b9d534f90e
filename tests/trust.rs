//! What people who point booking-cli at their own servers rely on: it touches only its own
//! objects and keys, never hangs on a frozen server or worker, never shows a password, and
//! stops cleanly on Ctrl-C. Each test runs the binary, as a user or CI does, against a database
//! and key prefix of its own — or a PostgreSQL or Redis server of its own where it must freeze
//! one.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    Cli, PrivatePostgres, PrivateRedis, USER, block_on, children_of, json, redis_url, signal, text,
};

/// Waits for `child` at most `limit`; kills it (and fails the test) if it is still running.
#[track_caller]
fn wait_at_most(mut child: Child, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => {
                let elapsed = started.elapsed();
                return (child.wait_with_output().expect("output"), elapsed);
            }
            None if started.elapsed() > limit => {
                // Not waiting for its output: a process it started may hold the pipes open.
                let _ = child.kill();
                let _ = child.wait();
                panic!("still running after {limit:?}");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn piped(mut command: Command) -> Child {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs")
}

/// One query's single text value, on a fresh connection to `url`.
fn query_text(url: &str, sql: &str) -> String {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    block_on(async move {
        let pool = sqlx::PgPool::connect(&url).await.expect("connect");
        let value: String = sqlx::query_scalar(&sql)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        pool.close().await;
        value
    })
}

fn execute(url: &str, statements: &[&str]) {
    let url = url.to_owned();
    let statements: Vec<String> = statements.iter().map(|s| (*s).to_owned()).collect();
    block_on(async move {
        let pool = sqlx::PgPool::connect(&url).await.expect("connect");
        for statement in statements {
            sqlx::raw_sql(&statement)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        pool.close().await;
    });
}

/// One Redis command on the shared Redis, on a connection of its own.
fn redis_command<T: redis::FromRedisValue>(name: &str, args: &[&str]) -> T {
    let (name, args): (String, Vec<String>) = (
        name.to_owned(),
        args.iter().map(|a| (*a).to_owned()).collect(),
    );
    block_on(async move {
        let client = redis::Client::open(redis_url()).expect("REDIS_URL parses");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        redis::cmd(&name)
            .arg(&args)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    })
}

/// A fingerprint of another application's tables: their columns and every row.
fn foreign_fingerprint(url: &str) -> String {
    query_text(
        url,
        "SELECT string_agg(t, ' | ' ORDER BY t) FROM (
             SELECT table_name || ': ' || md5(string_agg(column_name || ' ' || data_type, ',' ORDER BY ordinal_position)) AS t
               FROM information_schema.columns WHERE table_schema = 'public' GROUP BY table_name
             UNION ALL SELECT 'bookings rows ' || md5(coalesce(string_agg(b::text, ',' ORDER BY b::text), '')) FROM public.bookings b
             UNION ALL SELECT 'rooms rows ' || md5(coalesce(string_agg(r::text, ',' ORDER BY r::text), '')) FROM public.rooms r
             UNION ALL SELECT 'inventory rows ' || md5(coalesce(string_agg(i::text, ',' ORDER BY i::text), '')) FROM public.inventory i
             UNION ALL SELECT 'migrations rows ' || md5(coalesce(string_agg(m::text, ',' ORDER BY m::text), '')) FROM public._sqlx_migrations m
         ) AS parts",
    )
}

/// Another sqlx application's tables, named like booking-cli's, in the `public` schema.
const FOREIGN_TABLES: [&str; 8] = [
    "CREATE TABLE public.rooms (id INTEGER PRIMARY KEY, name TEXT, floor INTEGER)",
    "INSERT INTO public.rooms VALUES (1, 'theirs', 3), (2, 'also theirs', 4)",
    "CREATE TABLE public.inventory (room_id INTEGER, date DATE, total_inventory INTEGER, booked_count INTEGER)",
    "INSERT INTO public.inventory VALUES (1, '2024-12-25', 7, 6), (2, '2024-12-25', 9, 0)",
    "CREATE TABLE public.bookings (id BIGSERIAL PRIMARY KEY, guest TEXT, room_id INTEGER, status TEXT)",
    "INSERT INTO public.bookings (guest, room_id, status) VALUES ('ada', 1, 'paid'), ('bob', 2, 'cancelled')",
    "CREATE TABLE public._sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)",
    "INSERT INTO public._sqlx_migrations VALUES (20230101000000, 'their first migration', '2023-01-01T00:00:00Z', true, '\\x0102', 42)",
];

#[test]
fn another_applications_tables_and_keys_survive_every_command() {
    let cli = Cli::new();
    let url = cli.db.url.clone();
    block_on(async {
        use sqlx::migrate::MigrateDatabase;
        sqlx::Postgres::create_database(&url)
            .await
            .expect("create the test database");
    });
    execute(&url, &FOREIGN_TABLES);
    let before = foreign_fingerprint(&url);
    // Keys of another application on the same Redis, some named like booking-cli's own —
    // outside this run's prefix, but under the suite's root, so that a test that fails before
    // its cleanup leaves nothing scripts/test.sh does not remove.
    let theirs = format!("{}other-app:", common::test_prefix());
    let foreign_keys = [
        format!("{theirs}lock:room:1:2024-12-25"),
        format!("{theirs}fence:room:1:2024-12-25"),
    ];
    let redis = || redis::Client::open(redis_url()).expect("REDIS_URL parses");
    block_on(async {
        let mut conn = redis()
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        for key in &foreign_keys {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg("theirs")
                .query_async(&mut conn)
                .await
                .expect("SET");
        }
    });

    for args in [
        &["db", "reset"][..],
        &[
            "book",
            "--user",
            USER,
            "--room",
            "2",
            "--from",
            "2024-12-25",
            "--hold-ms",
            "0",
        ],
        &[
            "book",
            "--user",
            USER,
            "--room",
            "3",
            "--from",
            "2024-12-25",
            "--hold-ms",
            "0",
            "--mode",
            "fenced",
        ],
        &["stress", "--mode", "all", "--hold-ms", "50"],
        &["db", "reset"],
    ] {
        let out = cli.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(
            foreign_fingerprint(&url),
            before,
            "{args:?} changed another application's tables"
        );
    }
    assert_eq!(
        query_text(
            &url,
            "SELECT to_regclass('booking_cli.bookings')::text || ' ' || to_regclass('booking_cli._sqlx_migrations')::text
                    || ' ' || (SELECT count(*) FROM booking_cli._sqlx_migrations)::text"
        ),
        format!(
            "booking_cli.bookings booking_cli._sqlx_migrations {}",
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
                .expect("migrations/")
                .count()
        ),
        "booking-cli's own objects live in schema booking_cli"
    );
    block_on(async {
        let mut conn = redis()
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        for key in &foreign_keys {
            let value: Option<String> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .expect("GET");
            assert_eq!(value.as_deref(), Some("theirs"), "{key} was touched");
            let _: () = redis::cmd("DEL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .expect("DEL");
        }
    });
}

/// `DROP SCHEMA booking_cli CASCADE` would take objects of other schemas with it: a view on
/// booking-cli's tables or on a table someone added to its schema, a column of someone else's
/// table typed with an enum created in it (and that column's data), a column default calling a
/// function created in it. `db reset` and `db drop` refuse, naming each, and drop nothing.
#[test]
fn db_reset_and_drop_refuse_to_drop_what_other_schemas_depend_on() {
    let cli = Cli::new();
    cli.reset();
    let url = cli.db.url.clone();
    let shapes: [(&str, &[&str], &str); 4] = [
        (
            "a view on booking-cli's table",
            &["CREATE VIEW public.their_report AS SELECT room_id, date FROM booking_cli.inventory"],
            "public.their_report",
        ),
        (
            "a view on a table added to booking_cli",
            &[
                "CREATE TABLE booking_cli.added (id int)",
                "CREATE VIEW public.on_added AS SELECT id FROM booking_cli.added",
            ],
            "public.on_added",
        ),
        (
            "a column typed with an enum created in booking_cli",
            &[
                "CREATE TYPE booking_cli.mood AS ENUM ('calm', 'busy')",
                "CREATE TABLE public.their_moods (id int, mood booking_cli.mood)",
                "INSERT INTO public.their_moods VALUES (1, 'busy')",
            ],
            "public.their_moods",
        ),
        (
            "a column default calling a function in booking_cli",
            &[
                "CREATE FUNCTION booking_cli.seven() RETURNS int LANGUAGE sql AS 'SELECT 7'",
                "CREATE TABLE public.their_defaults (id int, n int DEFAULT booking_cli.seven())",
                "INSERT INTO public.their_defaults (id) VALUES (1)",
            ],
            "public.their_defaults",
        ),
    ];
    for (what, setup, names) in shapes {
        cli.reset();
        execute(&url, setup);
        for command in [&["db", "reset"][..], &["db", "drop"]] {
            let out = cli.run(command);
            assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out.stderr));
            let stderr = text(&out.stderr);
            assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
            assert!(
                stderr.contains(names),
                "{what}: names the dependent: {stderr}"
            );
            assert_eq!(
                query_text(&url, "SELECT count(*)::text FROM booking_cli.rooms"),
                "10",
                "{what}: {command:?} dropped nothing"
            );
        }
        // Their data is still there; then they clean up after themselves.
        execute(
            &url,
            &[
                "DROP VIEW IF EXISTS public.their_report, public.on_added",
                "DROP TABLE IF EXISTS public.their_moods, public.their_defaults",
            ],
        );
    }
}

/// `db drop` removes booking-cli's schema and every key under its prefix — fence counters
/// included — and nothing else: another schema's table and another prefix's keys stay.
#[test]
fn db_drop_removes_the_schema_and_the_keys_under_the_prefix_and_nothing_else() {
    let cli = Cli::new();
    cli.reset();
    let url = cli.db.url.clone();
    execute(
        &url,
        &[
            "CREATE TABLE public.theirs (id int)",
            "INSERT INTO public.theirs VALUES (1), (2)",
        ],
    );
    // A fence counter outlives its run by design.
    let out = cli.run(&[
        "book",
        "--mode",
        "fenced",
        "--user",
        USER,
        "--room",
        "2",
        "--from",
        "2024-12-25",
        "--hold-ms",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let theirs = format!("{}other-app:lock:room:1:2024-12-25", common::test_prefix());
    let keys = |pattern: String| -> Vec<String> { redis_command("KEYS", &[&pattern]) };
    redis_command::<()>("SET", &[&theirs, "theirs"]);
    let ours = format!("{}*", cli.prefix);
    assert!(!keys(ours.clone()).is_empty(), "the fence counter is there");

    let out = cli.run(&["db", "drop", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body = json(&out);
    assert_eq!(body["schema_dropped"], true, "{body}");
    assert!(
        body["redis_keys_deleted"].as_u64().unwrap_or(0) >= 1,
        "{body}"
    );
    assert_eq!(
        query_text(
            &url,
            "SELECT (to_regnamespace('booking_cli') IS NULL)::text"
        ),
        "true"
    );
    assert_eq!(
        query_text(&url, "SELECT count(*)::text FROM public.theirs"),
        "2"
    );
    assert!(keys(ours).is_empty(), "no key under the prefix is left");
    assert_eq!(
        keys(theirs.clone()),
        vec![theirs.clone()],
        "another prefix's key stays"
    );
    // Nothing left to drop is not an error.
    let out = cli.run(&["db", "drop"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no schema booking_cli"),
        "{}",
        text(&out.stdout)
    );
    redis_command::<()>("DEL", &[&theirs]);
}

/// Bad input is found before anything is written: an output file that cannot be written, a
/// database URL that is not PostgreSQL's, a date PostgreSQL cannot store.
#[test]
fn bad_outputs_urls_and_dates_are_refused_before_anything_is_written() {
    let cli = Cli::new();
    cli.reset();
    let before = cli.snapshot();
    for flag in ["--report", "--junit", "--trace"] {
        let out = cli.run(&["stress", "--mode", "naive", flag, "/nonexistent/dir/out"]);
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(flag), "{}", text(&out.stderr));
        assert_eq!(cli.snapshot(), before, "{flag}: nothing written");
    }
    // A --target is a server's base URL: a path or a query is refused in one line.
    let out = cli.run(&[
        "stress",
        "--mode",
        "naive",
        "--target",
        "http://127.0.0.1:1/?token=abc",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("base URL"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stderr).contains("abc"), "the token is masked");
    let out = cli
        .command(&["stress", "--mode", "naive"])
        .env("DATABASE_URL", "mysql://root@127.0.0.1:3306/booking")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("postgres://"),
        "{}",
        text(&out.stderr)
    );
    for args in [
        &["book", "--user", USER, "--room", "1", "--from=-5000-01-01"][..],
        &["stress", "--mode", "naive", "--from=-5000-01-01"],
    ] {
        let out = cli.run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("PostgreSQL"),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(cli.snapshot(), before);
}

/// `book --mode fenced` end to end, and the first half of fencing after Redis lost its
/// counter: a free slot books again (the counter is raised above what PostgreSQL accepted).
#[test]
fn book_fenced_creates_refuses_and_books_again_after_redis_loses_its_counter() {
    let cli = Cli::new();
    cli.reset();
    let book = |room: &str| {
        cli.run(&[
            "book",
            "--mode",
            "fenced",
            "--user",
            USER,
            "--room",
            room,
            "--from",
            "2024-12-25",
            "--hold-ms",
            "0",
            "--json",
        ])
    };
    let created = book("1");
    assert_eq!(created.status.code(), Some(0), "{}", text(&created.stderr));
    assert_eq!(json(&created)["outcome"], "created");
    let sold_out = book("1");
    assert_eq!(
        sold_out.status.code(),
        Some(3),
        "{}",
        text(&sold_out.stderr)
    );
    assert_eq!(json(&sold_out)["outcome"], "sold_out");
    assert_eq!(cli.reference_slot(), (1, 1, 1));

    // Room 2 has 5 rooms: three bookings take its token to 3 in PostgreSQL.
    for _ in 0..3 {
        assert_eq!(book("2").status.code(), Some(0));
    }
    block_on(async {
        let client = redis::Client::open(redis_url()).expect("REDIS_URL parses");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let counter = format!("{}fence:{{room:2}}:2024-12-25", cli.prefix);
        let deleted: u32 = redis::cmd("DEL")
            .arg(&counter)
            .query_async(&mut conn)
            .await
            .expect("DEL");
        assert_eq!(deleted, 1, "the counter existed");
    });
    // Redis hands out token 1 again; PostgreSQL has seen 3.
    let again = book("2");
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    assert_eq!(json(&again)["outcome"], "created");
    assert_eq!(
        query_text(
            &cli.db.url,
            "SELECT booked_count || ' ' || fence_token FROM booking_cli.inventory WHERE room_id = 2 AND date = '2024-12-25'"
        ),
        "4 4",
        "four bookings, and the night's token moved past the three it had seen"
    );
}

#[test]
fn passwords_never_show_in_help_errors_json_or_logs() {
    const PG_SECRET: &str = "Pg-S3cret-pw";
    const REDIS_SECRET: &str = "Redis-S3cret-pw";
    let redis = block_on(PrivateRedis::start_with(&["--requirepass", REDIS_SECRET]));
    let cli = Cli::new();
    // Trust authentication ignores the password, so the URL can carry one and still connect.
    let mut db_url = url::Url::parse(&cli.db.url).expect("a URL");
    db_url
        .set_password(Some(PG_SECRET))
        .expect("a password fits");
    let redis_url = format!("redis://:{REDIS_SECRET}@127.0.0.1:{}", redis.port);
    let run = |args: &[&str], db: &str| {
        cli.command(args)
            .env("DATABASE_URL", db)
            .env("REDIS_URL", &redis_url)
            .output()
            .expect("runs")
    };
    let db = db_url.as_str();
    let mut outputs = Vec::new();
    for args in [
        &["--help"][..],
        &["stress", "--help"],
        &["db", "reset"],
        &[
            "-vv",
            "book",
            "--user",
            USER,
            "--room",
            "1",
            "--from",
            "2024-12-25",
            "--hold-ms",
            "0",
            "--json",
        ],
        &["-v", "stress", "--mode", "locked", "--users", "5", "--json"],
        &[
            "-v",
            "stress",
            "--mode",
            "fenced",
            "--users",
            "4",
            "--processes",
            "2",
        ],
        // An error: a room that does not exist.
        &[
            "book",
            "--user",
            USER,
            "--room",
            "99",
            "--from",
            "2024-12-25",
        ],
    ] {
        let out = run(args, db);
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "{args:?}: {}",
            text(&out.stderr)
        );
        outputs.push((args.join(" "), out));
    }
    // A password in the query string, as libpq accepts it.
    let mut in_query = url::Url::parse(&cli.db.url).expect("a URL");
    in_query.set_query(Some(&format!("password={PG_SECRET}")));
    let out = run(&["db", "reset"], in_query.as_str());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("password=***"),
        "{}",
        text(&out.stdout)
    );
    outputs.push(("db reset, password in the query".to_owned(), out));
    in_query.set_port(Some(1)).expect("a port");
    let out = run(&["stress", "--mode", "naive"], in_query.as_str());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    outputs.push((
        "unreachable PostgreSQL, password in the query".to_owned(),
        out,
    ));
    // Credentials in a --target URL.
    let target = format!("http://user:{PG_SECRET}@127.0.0.1:1");
    let out = run(&["stress", "--mode", "naive", "--target", &target], db);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("user:***@127.0.0.1:1"),
        "{}",
        text(&out.stderr)
    );
    outputs.push(("--target with credentials".to_owned(), out));
    // Errors that name the servers: masked, not left out.
    let mut unreachable = db_url.clone();
    unreachable.set_port(Some(1)).expect("a port");
    let out = run(&["stress", "--mode", "naive"], unreachable.as_str());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(":***@127.0.0.1:1/"),
        "{}",
        text(&out.stderr)
    );
    outputs.push(("unreachable PostgreSQL".to_owned(), out));
    let wrong_redis = format!("redis://:{REDIS_SECRET}-wrong@127.0.0.1:{}", redis.port);
    let out = cli
        .command(&[
            "book",
            "--user",
            USER,
            "--room",
            "2",
            "--from",
            "2024-12-25",
        ])
        .env("DATABASE_URL", db)
        .env("REDIS_URL", &wrong_redis)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    outputs.push(("wrong Redis password".to_owned(), out));

    for (what, out) in &outputs {
        for stream in [text(&out.stdout), text(&out.stderr)] {
            for secret in [PG_SECRET, REDIS_SECRET] {
                assert!(
                    !stream.contains(secret),
                    "{what} shows a password:\n{stream}"
                );
            }
        }
    }
    // The -v logs were there to be checked.
    assert!(
        text(&outputs[4].1.stderr).contains("lock acquired"),
        "{}",
        text(&outputs[4].1.stderr)
    );
}

/// Every process of a private PostgreSQL is frozen (SIGSTOP) while 20 naive users are in their
/// hold: their writes get no answer. The run ends by itself within --db-timeout plus a few
/// seconds, says how the users fared, exits 1 — and once the server resumes, nothing is
/// half-written.
#[test]
fn a_frozen_postgres_ends_the_run_within_its_deadline_and_leaves_nothing_half_written() {
    let server = block_on(PrivatePostgres::start());
    let cli = Cli::on_server(server.url("booking"));
    cli.reset();
    let child = piped(cli.command(&[
        "stress",
        "--mode",
        "naive",
        "--hold-ms",
        "1500",
        "--db-timeout",
        "2s",
    ]));
    // The users are connected and in their hold.
    std::thread::sleep(Duration::from_millis(700));
    server.signal_all("STOP");
    let (out, elapsed) = wait_at_most(child, Duration::from_secs(30));
    server.signal_all("CONT");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        elapsed < Duration::from_secs(12),
        "the run took {elapsed:?} after the freeze (deadline 2 s)"
    );
    assert!(stderr.contains("20 users: 0 created"), "{stderr}");
    assert!(
        stderr.contains("no answer from PostgreSQL within 2s"),
        "{stderr}"
    );
    assert!(stderr.contains("no verdict"), "{stderr}");
    // Resumed: each frozen transaction is rolled back whole (its connection is gone).
    std::thread::sleep(Duration::from_millis(500));
    let (total, booked, rows) = cli.reference_slot();
    assert_eq!(total, 1);
    assert_eq!(booked, rows, "no count without its row");
    assert_eq!(booked, 0, "nothing was committed");
}

/// One of two worker processes is frozen mid-race: the parent notices its silence, kills it,
/// counts its users as errors, judges the rest from the database and exits 1.
#[test]
fn a_worker_that_stops_answering_is_killed_and_the_run_ends_with_status_1() {
    let cli = Cli::new();
    cli.reset();
    let child = piped(cli.command(&[
        "stress",
        "--mode",
        "atomic",
        "--users",
        "4",
        "--processes",
        "2",
        "--inventory",
        "5",
        "--hold-ms",
        "2000",
        "--json",
    ]));
    let parent = child.id();
    // Both workers started, connected and released.
    let started = Instant::now();
    let workers = loop {
        let workers = children_of(parent);
        if workers.len() == 2 || started.elapsed() > Duration::from_secs(20) {
            break workers;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(workers.len(), 2, "two workers");
    // Whatever happens below, no worker outlives the test (a stopped one would forever).
    let _reaper = Reaper(workers.clone());
    std::thread::sleep(Duration::from_millis(1000));
    signal(workers[0], "STOP");
    let (out, elapsed) = wait_at_most(child, Duration::from_secs(40));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    assert!(stderr.contains("stopped answering"), "{stderr}");
    let body = json(&out);
    assert_eq!(body["errors"], 2, "the frozen worker's users: {body}");
    assert_eq!(body["created"], 2, "the other worker's users: {body}");
    let (_, booked, rows) = cli.reference_slot();
    assert_eq!(booked, rows, "no count without its row");
    assert_eq!(
        booked, 2,
        "the killed worker's transactions were rolled back"
    );
}

/// Kills its processes when dropped.
struct Reaper(Vec<u32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Ctrl-C reaches the whole process group, as in a terminal: every worker stops its users, the
/// bookings in flight finish and release their locks, and the parent prints a partial report.
#[test]
fn ctrl_c_with_processes_ends_with_a_partial_report_and_no_lock_left() {
    use std::os::unix::process::CommandExt;
    let cli = Cli::with_budget(24);
    cli.reset();
    let mut command = cli.command(&[
        "stress",
        "--mode",
        "locked",
        "--processes",
        "2",
        "--inventory",
        "5",
        "--hold-ms",
        "600",
        "--lock-wait-ms",
        "20000",
        "--json",
    ]);
    command.process_group(0);
    let child = piped(command);
    let group = child.id();
    // Five holds of 600 ms take 3 s: stop in the middle.
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-INT", "--", &format!("-{group}")])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let (out, _) = wait_at_most(child, Duration::from_secs(30));
    cli.assert_interrupted(&out);
}

/// A closed loop of 2,000 users on four connections: users take turns on the three lanes
/// instead of queueing for a pooled connection. Queued, the last of 2,000 bookings of 5 ms
/// each would wait seconds, past the 1 s deadline, and fail.
#[test]
fn a_closed_loop_of_2000_users_runs_on_connection_lanes_without_errors() {
    let cli = Cli::new();
    cli.reset();
    let out = cli.run(&[
        "stress",
        "--mode",
        "atomic",
        "--duration",
        "2s",
        "--users",
        "2000",
        "--hold-ms",
        "5",
        "--connections",
        "4",
        "--db-timeout",
        "1s",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body = json(&out);
    assert_eq!(body["errors"], 0, "{body}");
    assert!(body["created"].as_u64().unwrap_or(0) > 0, "{body}");
    assert_eq!(body["lost_update"], false, "{body}");
}

/// The same lock policy gets the same judgement: fixed retries under-sell with every Redis lock,
/// and each run is judged as `locked` always was — safe, under-selling expected.
#[test]
fn fixed_lock_retries_are_judged_alike_for_locked_fenced_and_redlock() {
    let cli = Cli::new();
    cli.reset();
    for mode in ["locked", "fenced", "redlock"] {
        let out = cli.run(&["stress", "--mode", mode, "--inventory", "5", "--json"]);
        let body = json(&out);
        assert_eq!(
            body["verdicts"],
            serde_json::json!(["UNDER_SOLD"]),
            "{mode}: {body}"
        );
        assert_eq!(out.status.code(), Some(0), "{mode}: {body}");
        assert_eq!(body["expectation_met"], true, "{mode}: {body}");
    }
}
