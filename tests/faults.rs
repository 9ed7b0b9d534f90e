//! Dead servers and cut connections: every strategy must fail safe — a clear error for the
//! users it hit, nothing half-written, and a run that ends.

mod common;

use std::time::Duration;

use booking_cli::chaos::{Chaos, Fault};
use booking_cli::lock::RedisLock;
use booking_cli::run::{self as stress, StressConfig};
use booking_cli::strategy::{self, Mode};
use booking_cli::targets::StrategyTarget;
use common::{PrivateRedis, TestDb, deadline_policy};
use indicatif::ProgressBar;
use std::sync::Arc;

fn config(mode: Mode, inventory: i32) -> StressConfig {
    let mut c = common::stress_config(mode, inventory, deadline_policy(10_000, 20));
    c.hold = Duration::from_millis(300);
    c
}

fn context(
    repo: &booking_cli::repo::Repo,
    lock: Option<RedisLock>,
    c: &StressConfig,
) -> strategy::Context {
    strategy::Context {
        repo: repo.clone(),
        lock,
        redlock: None,
        tuning: c.tuning(),
        stop: booking_cli::stop::Stop::new(),
    }
}

/// Redis dies (SIGKILL) while the first holder works and 19 users wait for its lock. The
/// holder finishes its booking; every waiter's next attempt fails: no lock, no booking, an
/// error each. The run ends within the command time-out, and the database is consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_run_fails_closed_for_locked_and_fenced() {
    for mode in [Mode::Locked, Mode::Fenced] {
        let (_db, repo) = TestDb::seeded().await;
        let mut redis = PrivateRedis::start().await;
        let lock = RedisLock::connect(&redis.url(), "")
            .await
            .expect("private redis");
        let c = config(mode, 1);
        let strategy = strategy::build(mode, context(&repo, Some(lock), &c)).unwrap();
        let run = tokio::spawn({
            let repo = repo.clone();
            let c = c.clone();
            async move {
                booking_cli::targets::strategy::run(&repo, strategy, &c, &ProgressBar::hidden())
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        redis.kill();
        let report = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("the run must end, not hang")
            .expect("no panic")
            .expect("the run reports");
        let t = &report.tally;
        assert!(t.error_count() >= 1, "{mode}: waiters must fail: {t:?}");
        assert!(t.count("created") <= 1, "{mode}: {t:?}");
        assert_eq!(
            t.count("created")
                + t.error_count()
                + t.count("sold_out")
                + t.lock_refusals()
                + t.count("fenced_out"),
            20
        );
        assert!(!report.overbooked(), "{mode}: {:?}", report.nights);
        let night = report.nights[0];
        assert_eq!(
            i64::from(night.booked_count),
            night.confirmed_bookings,
            "{mode}"
        );
    }
}

/// Redis dies between connecting and the first booking: every user tries, none gets a lock,
/// none books — fail closed — and the database says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_redis_makes_no_booking() {
    for mode in [Mode::Locked, Mode::Fenced] {
        let (_db, repo) = TestDb::seeded().await;
        let mut redis = PrivateRedis::start().await;
        let lock = RedisLock::connect(&redis.url(), "")
            .await
            .expect("private redis");
        redis.kill();
        let c = config(mode, 1);
        let strategy = strategy::build(mode, context(&repo, Some(lock), &c)).unwrap();
        let report = tokio::time::timeout(
            Duration::from_secs(20),
            booking_cli::targets::strategy::run(&repo, strategy, &c, &ProgressBar::hidden()),
        )
        .await
        .expect("the run ends")
        .expect("the run reports");
        let t = &report.tally;
        assert_eq!(
            (t.count("created"), t.error_count()),
            (0, 20),
            "{mode}: every user tried and failed: {t:?}"
        );
        let night = report.nights[0];
        assert_eq!(
            (night.booked_count, night.confirmed_bookings),
            (0, 0),
            "{mode}: nothing booked"
        );
        assert!(
            !report.expectation_met(),
            "{mode}: twenty failed users prove nothing"
        );
    }
}

/// `--chaos pause-redis@100` on a Redis of the test's own: the server answers nobody for 5 s.
/// Waiters run into the command time-out and fail closed, the holder's booking is judged by
/// the database, and the run ends instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_redis_fails_closed_and_the_run_ends() {
    let (_db, repo) = TestDb::seeded().await;
    let redis = PrivateRedis::start().await;
    let lock = RedisLock::connect(&redis.url(), "")
        .await
        .expect("private redis");
    let mut c = config(Mode::Locked, 1);
    c.chaos = vec![Chaos {
        fault: Fault::PauseRedis,
        after: Duration::from_millis(100),
    }];
    let strategy = strategy::build(Mode::Locked, context(&repo, Some(lock.clone()), &c)).unwrap();
    let started = std::time::Instant::now();
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        stress::run_with_chaos(
            &repo,
            Arc::new(StrategyTarget::on_pool(strategy, &c, &repo)),
            vec![lock],
            &c,
            &booking_cli::stop::Stop::new(),
            &ProgressBar::hidden(),
        ),
    )
    .await
    .expect("the run ends, not hangs")
    .expect("the run reports");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let t = &report.tally;
    assert!(t.error_count() >= 1, "waiters fail closed: {t:?}");
    assert!(t.count("created") <= 1, "{t:?}");
    assert!(!report.overbooked(), "{:?}", report.nights);
    let night = report.nights[0];
    assert_eq!(i64::from(night.booked_count), night.confirmed_bookings);
    assert_eq!(
        i64::from(t.count("created")),
        night.confirmed_bookings,
        "the tally agrees with the rows"
    );
}

/// A user's backend is terminated while its transaction is open (in the hold, holding the row
/// it updated). PostgreSQL rolls that transaction back whole; the waiters carry on, and the
/// room it had taken goes to the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_terminated_backend_leaves_no_partial_booking() {
    for mode in [Mode::Atomic, Mode::RowLock, Mode::Locked] {
        let (_db, repo) = TestDb::seeded().await;
        let lock = if mode.needs_redis() {
            Some(common::private_lock().await)
        } else {
            None
        };
        let mut c = config(mode, 3);
        c.chaos = vec![Chaos {
            fault: Fault::KillBackend,
            after: Duration::from_millis(100),
        }];
        let strategy = strategy::build(mode, context(&repo, lock.clone(), &c)).unwrap();
        let report = stress::run_with_chaos(
            &repo,
            Arc::new(StrategyTarget::on_pool(strategy, &c, &repo)),
            Vec::new(),
            &c,
            &booking_cli::stop::Stop::new(),
            &ProgressBar::hidden(),
        )
        .await
        .expect("the run reports");
        let t = &report.tally;
        assert_eq!(
            t.error_count(),
            1,
            "{mode}: exactly the terminated user fails: {t:?}"
        );
        assert_eq!(
            t.count("created"),
            3,
            "{mode}: the others still sell every room: {t:?}"
        );
        let night = report.nights[0];
        assert_eq!(
            (night.booked_count, night.confirmed_bookings),
            (3, 3),
            "{mode}: no row without its count, no count without its row"
        );
        assert!(
            report.expectation_met(),
            "{mode}: under chaos, safe means the invariants hold"
        );
        if let Some(lock) = lock {
            assert!(
                lock.leftover_keys().await.unwrap().is_empty(),
                "{mode}: locks left"
            );
        }
    }
}
