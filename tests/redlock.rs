//! Redlock over three private `redis-server`s (each test starts its own and kills them when it
//! ends, also on failure): safe with all up, safe with one down, fails closed with two down.

mod common;

use std::time::Duration;

use booking_cli::lock::redlock::RedLock;
use booking_cli::run::{self as stress, StressReport};
use booking_cli::stop::Stop;
use booking_cli::strategy::{self, Mode};
use common::{PrivateRedis, TestDb, deadline_policy};
use indicatif::ProgressBar;

async fn run_over(servers: &[PrivateRedis]) -> StressReport {
    let (_db, repo) = TestDb::seeded().await;
    let urls: Vec<String> = servers.iter().map(PrivateRedis::url).collect();
    let redlock = RedLock::connect(&urls, "").await.expect("URLs are valid");
    let config = common::stress_config(Mode::Redlock, 1, deadline_policy(5_000, 20));
    run_on(&repo, &redlock, &config).await
}

async fn run_on(
    repo: &booking_cli::repo::Repo,
    redlock: &RedLock,
    config: &stress::StressConfig,
) -> StressReport {
    let strategy = strategy::build(
        Mode::Redlock,
        strategy::Context {
            repo: repo.clone(),
            lock: None,
            redlock: Some(redlock.clone()),
            tuning: config.tuning(),
            stop: Stop::new(),
        },
    )
    .expect("strategy builds");
    tokio::time::timeout(
        Duration::from_secs(60),
        booking_cli::targets::strategy::run(repo, strategy, config, &ProgressBar::hidden()),
    )
    .await
    .expect("the run ends")
    .expect("the run reports")
}

async fn three() -> Vec<PrivateRedis> {
    vec![
        PrivateRedis::start().await,
        PrivateRedis::start().await,
        PrivateRedis::start().await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redlock_over_three_instances_lets_exactly_one_through() {
    let servers = three().await;
    let report = run_over(&servers).await;
    let t = &report.tally;
    assert_eq!((t.count("created"), t.error_count()), (1, 0), "{t:?}");
    assert!(report.verdicts().is_empty(), "{:?}", report.nights);
    let stats = report.stats.strategy.lock.expect("lock stats");
    assert_eq!(stats.locks_expired_before_release, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redlock_stays_safe_with_one_instance_stopped() {
    let mut servers = three().await;
    servers[2].kill();
    let report = run_over(&servers).await;
    let t = &report.tally;
    assert_eq!(
        (t.count("created"), t.error_count()),
        (1, 0),
        "2 of 3 is a majority: {t:?}"
    );
    assert!(report.verdicts().is_empty(), "{:?}", report.nights);
}

/// An instance that stops answering after the connection is made (frozen with SIGSTOP): its
/// votes run into the per-instance time-out mid-run. One frozen of three leaves a majority;
/// two frozen leave none, and every user fails closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redlock_times_out_frozen_instances_and_keeps_or_loses_its_majority() {
    let servers = three().await;
    let (_db, repo) = TestDb::seeded().await;
    let urls: Vec<String> = servers.iter().map(PrivateRedis::url).collect();
    let redlock = RedLock::connect(&urls, "").await.expect("all three answer");
    let mut config = common::stress_config(Mode::Redlock, 1, deadline_policy(2_000, 20));
    // A TTL well below the 3 s command time-out: only the per-instance time-out (250 ms) leaves
    // a lock any validity when an instance does not answer.
    config.lock_policy.ttl = Duration::from_secs(1);

    servers[2].pause();
    let report = run_on(&repo, &redlock, &config).await;
    let t = &report.tally;
    assert_eq!(
        (t.count("created"), t.error_count()),
        (1, 0),
        "2 of 3 answer: {t:?}"
    );
    assert_eq!(report.nights[0].confirmed_bookings, 1);

    servers[1].pause();
    let report = run_on(&repo, &redlock, &config).await;
    let t = &report.tally;
    assert_eq!(
        (t.count("created"), t.error_count()),
        (0, 20),
        "1 of 3 answers: {t:?}"
    );
    assert!(t.errors.keys().all(|m| m.contains("no quorum")), "{t:?}");
    let night = report.nights[0];
    assert_eq!((night.booked_count, night.confirmed_bookings), (0, 0));
    servers[1].resume();
    servers[2].resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redlock_fails_closed_with_two_instances_stopped() {
    let mut servers = three().await;
    servers[1].kill();
    servers[2].kill();
    let report = run_over(&servers).await;
    let t = &report.tally;
    assert_eq!(
        (t.count("created"), t.error_count()),
        (0, 20),
        "no majority, no booking: {t:?}"
    );
    assert!(t.errors.keys().all(|m| m.contains("no quorum")), "{t:?}");
    let night = report.nights[0];
    assert_eq!((night.booked_count, night.confirmed_bookings), (0, 0));
    assert!(!report.overbooked());
}
