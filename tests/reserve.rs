//! `one-statement` and `reserve`: the bookings that hold nothing through the slow work. The
//! reference run, inventory 3 and overlapping stays are in `tests/lab.rs` (every registered
//! strategy); here: what is particular to them — expired holds, late confirmations, failed
//! payments — asserted on the database (many processes: `lab.rs`).

mod common;

use std::time::Duration;

use booking_cli::domain::{BookingRequest, Outcome, RoomId, Stay, UserId};
use booking_cli::repo::{Claimed, NightState, Repo};
use booking_cli::strategy::{Mode, Payments};
use common::{TestDb, context, deadline_policy, policy, race};

fn night() -> Stay {
    Stay::nights_from("2024-12-25".parse().expect("a date"), 1).expect("one night")
}

fn request(stay: Stay) -> BookingRequest {
    BookingRequest {
        user: UserId::random(),
        room: RoomId::new(1).expect("room 1"),
        stay,
    }
}

/// Room 1 on 2024-12-25, as the database has it.
async fn night_state(repo: &Repo) -> NightState {
    repo.slot_state(RoomId::new(1).unwrap(), &night())
        .await
        .unwrap()
        .remove(0)
}

/// (booked_count, confirmed bookings, live holds) of room 1 on 2024-12-25.
async fn counts(repo: &Repo) -> (i32, i64, i64) {
    let n = night_state(repo).await;
    (n.booked_count, n.confirmed_bookings, n.held_bookings)
}

/// A seeded database whose room 1 has `rooms` rooms on 2024-12-25.
async fn slot_with(rooms: i32) -> (TestDb, Repo) {
    let (db, repo) = TestDb::seeded().await;
    repo.prepare_slot(RoomId::new(1).unwrap(), &night(), rooms, 8)
        .await
        .unwrap();
    (db, repo)
}

/// (status, count) of the bookings of room 1, sorted.
async fn statuses(repo: &Repo) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT status, count(*) FROM booking_cli.bookings WHERE room_id = 1 GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(repo.pool())
    .await
    .expect("statuses")
}

/// A reserve strategy: payments of `work_ms` failing with `fail_rate`, holds living `ttl_ms`,
/// users refused by holds waiting up to `wait_ms` (none: refused at once).
fn reserve(
    repo: &Repo,
    work_ms: u64,
    ttl_ms: u64,
    wait_ms: Option<u64>,
    fail_rate: f64,
) -> std::sync::Arc<dyn booking_cli::strategy::Strategy> {
    let lock_policy = match wait_ms {
        Some(wait) => deadline_policy(wait, 10),
        None => policy(5_000, 10, 50),
    };
    let mut ctx = context(repo, None, None, lock_policy, work_ms);
    ctx.tuning.payments = Payments {
        fail_rate,
        seed: 7,
        hold_ttl: Duration::from_millis(ttl_ms),
    };
    common::build_with(Mode::Reserve, ctx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_hold_is_reclaimed_and_its_room_sold_to_the_next_user() {
    let (_db, repo) = slot_with(1).await;
    // A client that placed a hold and vanished: its hold lives 50 ms and is never confirmed.
    let vanished = repo
        .book_stay(&request(night()), Some(Duration::from_millis(50)))
        .await
        .unwrap();
    assert!(matches!(vanished, Claimed::Booked { .. }));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let outcome = reserve(&repo, 10, 5_000, None, 0.0)
        .book(&request(night()))
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Created { .. }), "{outcome:?}");
    assert_eq!(counts(&repo).await, (1, 1, 0));
    assert_eq!(
        statuses(&repo).await,
        vec![("confirmed".to_owned(), 1), ("expired".to_owned(), 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_confirmation_after_the_hold_expired_is_refused_and_the_room_given_back() {
    let (_db, repo) = slot_with(1).await;
    // The payment takes 300 ms; the hold lives 100 ms.
    let outcome = reserve(&repo, 300, 100, None, 0.0)
        .book(&request(night()))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::HoldExpired);
    let state = night_state(&repo).await;
    assert_eq!(
        (
            state.booked_count,
            state.confirmed_bookings,
            state.confirmed_after_expiry
        ),
        (0, 0, 0)
    );
    assert_eq!(statuses(&repo).await, vec![("expired".to_owned(), 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_confirmation_in_the_database_is_named_by_the_verdict() {
    let (_db, repo) = slot_with(1).await;
    // What a confirmation that ignored the expiry would leave: the tool never writes this.
    sqlx::query(
        "WITH b AS (
             INSERT INTO booking_cli.bookings
                 (user_id, room_id, start_date, end_date, status, expires_at, confirmed_at)
             VALUES (gen_random_uuid(), 1, '2024-12-25', '2024-12-26', 'confirmed',
                     now() - interval '1 second', now())
             RETURNING room_id)
         UPDATE booking_cli.inventory SET booked_count = 1
         WHERE room_id = 1 AND date = '2024-12-25'",
    )
    .execute(repo.pool())
    .await
    .unwrap();
    let state = night_state(&repo).await;
    assert_eq!(state.confirmed_after_expiry, 1);
    assert!(!state.oversold() && !state.drifted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_payments_give_their_rooms_back() {
    let (_db, repo) = slot_with(3).await;
    // Every payment fails: three holds placed and cancelled, nothing sold, nothing held.
    let strategy = reserve(&repo, 50, 5_000, None, 1.0);
    let results = race(strategy, (0..3).map(|_| request(night())).collect()).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(Outcome::PaymentFailed))),
        "{results:?}"
    );
    assert_eq!(counts(&repo).await, (0, 0, 0));
    assert_eq!(statuses(&repo).await, vec![("cancelled".to_owned(), 3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_wait_deadline_rooms_whose_payment_failed_are_sold_to_waiting_users() {
    let (_db, repo) = slot_with(5).await;
    let strategy = reserve(&repo, 100, 5_000, Some(5_000), 0.3);
    let results = race(strategy, (0..20).map(|_| request(night())).collect()).await;
    let failed = results
        .iter()
        .filter(|r| matches!(r, Ok(Outcome::PaymentFailed)))
        .count();
    assert!(failed > 0, "seed 7 at 0.3 fails some payments: {results:?}");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let state = repo
        .slot_state(RoomId::new(1).unwrap(), &night())
        .await
        .unwrap();
    // Every room ends sold, none twice: the users refused by holds kept trying.
    assert_eq!(
        (
            state[0].booked_count,
            state[0].confirmed_bookings,
            state[0].held_bookings
        ),
        (5, 5, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_statement_books_overlapping_stays_all_nights_or_none() {
    let (_db, repo) = TestDb::seeded().await;
    let room = RoomId::new(1).unwrap();
    let three = Stay::nights_from("2024-12-24".parse().unwrap(), 3).unwrap();
    repo.prepare_slot(room, &three, 5, 8).await.unwrap();
    // The 26th has one room left; two stays that need it, and one stay that does not.
    sqlx::query(
        "UPDATE booking_cli.inventory SET total_inventory = 1 WHERE room_id = 1 AND date = '2024-12-26'",
    )
    .execute(repo.pool())
    .await
    .unwrap();
    let strategy = common::build_with(
        Mode::OneStatement,
        context(&repo, None, None, policy(5_000, 10, 50), 0),
    );
    let a = Stay::nights_from("2024-12-25".parse().unwrap(), 2).unwrap();
    let b = Stay::nights_from("2024-12-24".parse().unwrap(), 3).unwrap();
    let results = race(
        strategy,
        (0..10)
            .map(|i| request(if i % 2 == 0 { a } else { b }))
            .collect(),
    )
    .await;
    let created = results
        .iter()
        .filter(|r| matches!(r, Ok(Outcome::Created { .. })))
        .count();
    assert_eq!(created, 1, "the 26th has one room: {results:?}");
    let nights = repo.slot_state(room, &three).await.unwrap();
    // Nothing oversold, no counter without its row — in particular no night incremented by a
    // stay that was refused on another night.
    for n in &nights {
        assert!(!n.oversold() && !n.drifted(), "{nights:?}");
    }
    assert_eq!(nights[2].confirmed_bookings, 1, "{nights:?}");
}
