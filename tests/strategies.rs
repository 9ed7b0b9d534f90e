//! The strategies against the real PostgreSQL and Redis: each test has its own database and its
//! own Redis key prefix, so they run in parallel. Races are made certain, not likely: every user
//! waits on one barrier, and the hold (200 ms) is far longer than an availability check.

mod common;

use booking_cli::domain::{BookingRequest, Outcome, RoomId, Stay, UserId};
use booking_cli::error::{BookingError, InputError};
use booking_cli::lock::LockPolicy;
use booking_cli::repo::{NightState, Repo};
use booking_cli::run::{StressConfig, StressReport};
use booking_cli::strategy::{Expectation, Mode};
use chrono::NaiveDate;
use common::{TestDb, build, policy, private_lock, race, reference_policy, snapshot};
use indicatif::ProgressBar;

fn date(s: &str) -> NaiveDate {
    s.parse().expect("test date")
}

fn room(id: i32) -> RoomId {
    RoomId::new(id).expect("test room")
}

fn reference_config(mode: Mode, inventory: i32, lock_policy: LockPolicy) -> StressConfig {
    common::stress_config(mode, inventory, lock_policy)
}

async fn stress_run(
    repo: &Repo,
    config: &StressConfig,
    lock: Option<booking_cli::lock::RedisLock>,
) -> StressReport {
    let strategy = build(
        config.mode,
        repo,
        lock,
        config.lock_policy,
        config.hold.as_millis() as u64,
    );
    booking_cli::targets::strategy::run(repo, strategy, config, &ProgressBar::hidden())
        .await
        .expect("stress run")
}

#[track_caller]
fn assert_night(state: &NightState, total: i32, booked: i32, confirmed: i64) {
    assert_eq!(
        (
            state.total_inventory,
            state.booked_count,
            state.confirmed_bookings
        ),
        (total, booked, confirmed),
        "night {}: expected total_inventory/booked_count/confirmed = {total}/{booked}/{confirmed}",
        state.night
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn naive_with_20_users_on_the_last_room_overbooks() {
    let (_db, repo) = TestDb::seeded().await;
    let config = reference_config(Mode::Naive, 1, reference_policy());
    let report = stress_run(&repo, &config, None).await;

    // The database, not the tally: the counter and the rows both exceed the single room.
    let night = repo.slot_state(room(1), &config.stay).await.unwrap()[0];
    assert!(
        night.booked_count > night.total_inventory && night.confirmed_bookings > 1,
        "naive must overbook every run, database shows {night:?}"
    );
    assert_eq!(i64::from(night.booked_count), night.confirmed_bookings);
    assert!(report.overbooked());
    assert_eq!(report.verdict(), "OVERBOOKED");
    assert!(report.expectation_met());
    assert_eq!(report.tally.error_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locked_with_20_users_lets_exactly_one_through_every_time() {
    let (_db, repo) = TestDb::seeded().await;
    let lock = private_lock().await;
    let config = reference_config(Mode::Locked, 1, reference_policy());
    for run in 1..=10 {
        let report = stress_run(&repo, &config, Some(lock.clone())).await;
        let t = &report.tally;
        assert_eq!(
            (
                t.count("created"),
                t.count("sold_out") + t.lock_refusals(),
                t.error_count()
            ),
            (1, 19, 0),
            "run {run}: created/conflicts/errors, tally {t:?}"
        );
        let night = repo.slot_state(room(1), &config.stay).await.unwrap()[0];
        assert_night(&night, 1, 1, 1);
        assert!(!report.overbooked(), "run {run}");
        assert!(report.expectation_met(), "run {run}");
        assert_eq!(
            lock.leftover_keys().await.unwrap(),
            Vec::<String>::new(),
            "run {run}: lock keys left in Redis"
        );
    }
    assert_eq!(lock.stats().locks_expired_before_release, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locked_with_inventory_3_and_enough_retries_sells_exactly_3() {
    let (_db, repo) = TestDb::seeded().await;
    let lock = private_lock().await;
    let mut config = reference_config(Mode::Locked, 3, policy(5000, 400, 20));
    config.hold = std::time::Duration::from_millis(100);
    let report = stress_run(&repo, &config, Some(lock.clone())).await;
    let t = &report.tally;
    assert_eq!(
        (
            t.count("created"),
            t.count("sold_out"),
            t.lock_refusals(),
            t.error_count()
        ),
        (3, 17, 0, 0),
        "created/sold out/lock not acquired/errors"
    );
    let night = repo.slot_state(room(1), &config.stay).await.unwrap()[0];
    assert_night(&night, 3, 3, 3);
    assert!(lock.leftover_keys().await.unwrap().is_empty());
}

/// Two stays that share only their middle night: 24th–26th and 25th–27th, with one room left
/// on the 25th. The locked strategy locks every night, so they contend on the 25th; the naive
/// one, given the same race, sells the 25th twice — proof that the race is real.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_multi_night_stays_contend_on_their_shared_night() {
    let (_db, repo) = TestDb::seeded().await;
    let r = room(3);
    let whole = Stay::between(date("2024-12-24"), date("2024-12-27")).unwrap();
    let shared = Stay::nights_from(date("2024-12-25"), 1).unwrap();
    let requests = || {
        vec![
            BookingRequest {
                user: UserId::random(),
                room: r,
                stay: Stay::nights_from(date("2024-12-24"), 2).unwrap(),
            },
            BookingRequest {
                user: UserId::random(),
                room: r,
                stay: Stay::nights_from(date("2024-12-25"), 2).unwrap(),
            },
        ]
    };

    // Locked: exactly one of them gets the 25th; the other finds it sold out.
    repo.prepare_slot(r, &whole, 5, 8).await.unwrap();
    repo.prepare_slot(r, &shared, 1, 8).await.unwrap();
    let lock = private_lock().await;
    let locked = build(
        Mode::Locked,
        &repo,
        Some(lock.clone()),
        policy(5000, 100, 20),
        200,
    );
    let results = race(locked, requests()).await;
    let created = results
        .iter()
        .filter(|r| matches!(r, Ok(Outcome::Created { .. })))
        .count();
    let sold_out_on_25th = results
        .iter()
        .filter(|r| matches!(r, Ok(Outcome::SoldOut { night }) if *night == date("2024-12-25")))
        .count();
    assert_eq!((created, sold_out_on_25th), (1, 1), "results: {results:?}");
    let nights = repo.slot_state(r, &whole).await.unwrap();
    assert_night(&nights[1], 1, 1, 1);
    assert_eq!(
        nights[0].booked_count + nights[2].booked_count,
        1,
        "only the winner's other night is booked: {nights:?}"
    );
    assert!(nights.iter().all(|n| !n.overbooked()), "{nights:?}");
    assert!(lock.leftover_keys().await.unwrap().is_empty());

    // Naive, same race: both pass the check of the 25th.
    repo.prepare_slot(r, &whole, 5, 8).await.unwrap();
    repo.prepare_slot(r, &shared, 1, 8).await.unwrap();
    let naive = build(Mode::Naive, &repo, None, reference_policy(), 200);
    let results = race(naive, requests()).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(Outcome::Created { .. }))),
        "{results:?}"
    );
    let nights = repo.slot_state(r, &whole).await.unwrap();
    assert_night(&nights[1], 1, 2, 2);
    assert!(nights[1].overbooked());
}

#[tokio::test]
async fn a_night_without_inventory_is_an_error_and_nothing_is_written() {
    let (db, repo) = TestDb::seeded().await;
    let before = snapshot(&db.url).await;
    // The seeded calendar ends with the night of 2025-01-05.
    let request = BookingRequest {
        user: UserId::random(),
        room: room(1),
        stay: Stay::nights_from(date("2025-01-05"), 2).unwrap(),
    };
    let lock = private_lock().await;
    for (mode, lock) in [(Mode::Naive, None), (Mode::Locked, Some(lock.clone()))] {
        let strategy = build(mode, &repo, lock, reference_policy(), 0);
        match strategy.book(&request).await {
            Err(BookingError::Input(InputError::NoInventory { room: r, night })) => {
                assert_eq!((r, night), (room(1), date("2025-01-06")), "{mode}");
            }
            other => panic!("{mode}: expected NoInventory, got {other:?}"),
        }
    }
    assert!(matches!(
        repo.ensure_bookable(room(1), &request.stay).await,
        Err(BookingError::Input(InputError::NoInventory { .. }))
    ));
    assert!(matches!(
        repo.ensure_bookable(room(99), &Stay::nights_from(date("2024-12-25"), 1).unwrap())
            .await,
        Err(BookingError::Input(InputError::UnknownRoom { .. }))
    ));
    assert_eq!(snapshot(&db.url).await, before, "the database changed");
    assert!(
        lock.leftover_keys().await.unwrap().is_empty(),
        "locks left after the error"
    );
}

#[tokio::test]
async fn a_stress_run_on_an_unknown_room_writes_nothing() {
    let (db, repo) = TestDb::seeded().await;
    let before = snapshot(&db.url).await;
    let mut config = reference_config(Mode::Naive, 1, reference_policy());
    config.room = room(99);
    let strategy = build(Mode::Naive, &repo, None, reference_policy(), 0);
    let result =
        booking_cli::targets::strategy::run(&repo, strategy, &config, &ProgressBar::hidden()).await;
    assert!(matches!(
        result,
        Err(BookingError::Input(InputError::UnknownRoom { .. }))
    ));
    assert_eq!(snapshot(&db.url).await, before);
}

#[tokio::test]
async fn expectations_are_judged_from_the_database() {
    let (_db, repo) = TestDb::seeded().await;
    // Naive asked to be safe: it overbooks, so the expectation fails (CI would exit 3).
    let mut config = reference_config(Mode::Naive, 1, reference_policy());
    config.users = 5;
    config.expect = Expectation::Safe;
    let report = stress_run(&repo, &config, None).await;
    assert!(report.overbooked());
    assert!(!report.expectation_met());
}
