//! The flash sale: `sharded` and `batched` at the edges — shards a booking must pass by, a
//! night sold out while its shards are busy, batches that share one statement, and combiners
//! of several processes on one night — each judged from the database. (The reference run,
//! inventory 3 and overlapping multi-night stays run for them in `lab.rs`, as for every
//! strategy, and `--processes 4` in `lab.rs` beside the other strategies whose guard is one
//! conditional statement.)

mod common;

use std::time::Duration;

use booking_cli::domain::{BookingRequest, Outcome, RoomId, Stay, UserId};
use booking_cli::repo::Repo;
use booking_cli::strategy::{Mode, Strategy};
use common::{TestDb, reference_policy};

fn night() -> Stay {
    Stay::nights_from("2024-12-25".parse().expect("a date"), 1).expect("one night")
}

fn request() -> BookingRequest {
    BookingRequest {
        user: UserId::random(),
        room: RoomId::new(1).expect("room 1"),
        stay: night(),
    }
}

fn build(mode: Mode, repo: &Repo) -> std::sync::Arc<dyn Strategy> {
    common::build(mode, repo, None, reference_policy(), 0)
}

/// Room 1's night of the 25th: `inventory` rooms split over `shards` empty shards.
async fn prepare(repo: &Repo, inventory: i32, shards: u32) {
    repo.prepare_slot(RoomId::new(1).expect("room 1"), &night(), inventory, shards)
        .await
        .expect("prepare the slot");
}

/// Waits until `n` of the tool's connections wait for a row lock (bounded).
async fn until_waiting(repo: &Repo, n: usize) {
    for _ in 0..500 {
        if repo.lock_waits().await.expect("pg_stat_activity").len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{n} booking(s) never waited for a row lock");
}

/// A transaction that holds the row lock of every shard `WHERE` selects.
async fn hold_shards(repo: &Repo, which: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut holder = repo.pool().begin().await.expect("begin");
    sqlx::query(&format!(
        "SELECT shard FROM inventory_shards WHERE room_id = 1 AND date = '2024-12-25' AND {which} FOR UPDATE"
    ))
    .fetch_all(&mut *holder)
    .await
    .expect("lock the shards");
    holder
}

/// The night as the verdict reads it: (total_inventory, booked_count, confirmed rows).
async fn state(repo: &Repo) -> (i32, i32, i64) {
    let nights = repo
        .slot_state(RoomId::new(1).expect("room 1"), &night())
        .await
        .expect("slot state");
    let n = nights[0];
    (n.total_inventory, n.booked_count, n.confirmed_bookings)
}

/// Inventory 8 over 8 shards, four of them held by another transaction: four bookings in a row
/// each get a room at once from the shards nobody holds. (Without SKIP LOCKED, each would pick
/// a held shard half the time and wait for it: all four go through with probability 1/70.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sharded_passes_busy_shards_by() {
    let (_db, repo) = TestDb::seeded().await;
    prepare(&repo, 8, 8).await;
    let holder = hold_shards(&repo, "shard < 4").await;
    let sharded = build(Mode::Sharded, &repo);
    for i in 0..4 {
        let outcome = tokio::time::timeout(Duration::from_secs(5), sharded.book(&request()))
            .await
            .unwrap_or_else(|_| panic!("booking {i} waited for a busy shard"))
            .expect("booking");
        assert!(
            matches!(outcome, Outcome::Created { .. }),
            "booking {i}: {outcome:?}"
        );
    }
    holder.rollback().await.expect("rollback");
    assert_eq!(state(&repo).await, (8, 4, 4));
    assert_eq!(sharded.stats().shard_waits, Some(0));
}

/// Every shard with a room is busy: a booking waits for them instead of refusing, and gets the
/// room their holder did not take. Without the second, waiting statement it would be refused
/// with a room left: under-selling.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sharded_waits_when_every_shard_is_busy_and_books_what_is_left() {
    let (_db, repo) = TestDb::seeded().await;
    prepare(&repo, 5, 8).await;
    let holder = hold_shards(&repo, "true").await;
    let sharded = build(Mode::Sharded, &repo);
    let booking = tokio::spawn({
        let sharded = sharded.clone();
        async move { sharded.book(&request()).await }
    });
    until_waiting(&repo, 1).await;
    assert!(!booking.is_finished(), "refused while the shards were busy");
    holder
        .commit()
        .await
        .expect("release the shards, taking nothing");
    let outcome = booking.await.expect("join").expect("booking");
    assert!(matches!(outcome, Outcome::Created { .. }), "{outcome:?}");
    assert_eq!(state(&repo).await, (5, 1, 1));
    assert_eq!(sharded.stats().shard_waits, Some(1));
}

/// The night sells out while its shards are busy: the waiting booking is refused, sold out, and
/// nothing is oversold — the wait checks each shard's newest count, not the one it first read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_night_sold_out_while_its_shards_are_busy_refuses_the_waiter() {
    let (_db, repo) = TestDb::seeded().await;
    prepare(&repo, 5, 8).await;
    let mut holder = hold_shards(&repo, "true").await;
    let sharded = build(Mode::Sharded, &repo);
    let booking = tokio::spawn({
        let sharded = sharded.clone();
        async move { sharded.book(&request()).await }
    });
    until_waiting(&repo, 1).await;
    // The holder sells every room (rows and counters, as five bookings would) and commits.
    sqlx::query(
        "UPDATE inventory_shards SET booked = capacity WHERE room_id = 1 AND date = '2024-12-25'",
    )
    .execute(&mut *holder)
    .await
    .expect("sell the shards");
    for _ in 0..5 {
        sqlx::query(
            "INSERT INTO bookings (user_id, room_id, start_date, end_date)
             VALUES (gen_random_uuid(), 1, '2024-12-25', '2024-12-26')",
        )
        .execute(&mut *holder)
        .await
        .expect("their rows");
    }
    holder.commit().await.expect("commit");
    let outcome = booking.await.expect("join").expect("booking");
    assert!(matches!(outcome, Outcome::SoldOut { .. }), "{outcome:?}");
    assert_eq!(state(&repo).await, (5, 5, 5));
}

/// Inventory 5 across 8 shards (five of one room, three empty), 40 users at once: exactly 5
/// created, 35 sold out, nobody refused while a room was left, the shards summing to the night.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sharded_sells_inventory_5_over_8_shards_exactly() {
    let (_db, repo) = TestDb::seeded().await;
    let mut config = common::stress_config(Mode::Sharded, 5, reference_policy());
    config.users = 20;
    config.shards = 8;
    let sharded = build(Mode::Sharded, &repo);
    let report = booking_cli::targets::strategy::run(
        &repo,
        sharded,
        &config,
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .expect("stress run");
    assert_eq!(
        (
            report.tally.count("created"),
            report.tally.count("sold_out"),
            report.tally.error_count(),
            report.under_sold
        ),
        (5, 15, 0, 0),
        "{:?}",
        report.tally
    );
    assert_eq!(report.verdicts(), vec![]);
    let shards: Vec<(i32, i32)> = sqlx::query_as(
        "SELECT capacity, booked FROM inventory_shards
         WHERE room_id = 1 AND date = '2024-12-25' ORDER BY shard",
    )
    .fetch_all(repo.pool())
    .await
    .expect("shards");
    assert_eq!(
        shards.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![1, 1, 1, 1, 1, 0, 0, 0]
    );
    assert_eq!(shards.iter().map(|s| s.1).sum::<i32>(), 5);
    assert_eq!(state(&repo).await, (5, 5, 5));
}

/// Bookings that queue while a batch is in flight share the next statement: with the night's
/// row held, ten bookings reach the database in two statements at most (the first arrival's,
/// then everyone who queued behind it), and the five rooms go to five of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_bookings_share_one_statement() {
    let (_db, repo) = TestDb::seeded().await;
    prepare(&repo, 5, 8).await;
    let mut holder = repo.pool().begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM inventory WHERE room_id = 1 AND date = '2024-12-25' FOR UPDATE")
        .fetch_all(&mut *holder)
        .await
        .expect("hold the night's row");
    let batched = build(Mode::Batched, &repo);
    let mut bookings = Vec::new();
    let first = tokio::spawn({
        let batched = batched.clone();
        async move { batched.book(&request()).await }
    });
    until_waiting(&repo, 1).await;
    for _ in 0..9 {
        let batched = batched.clone();
        bookings.push(tokio::spawn(async move { batched.book(&request()).await }));
    }
    // Released only once all nine queued behind the batch in flight.
    for _ in 0..500 {
        if batched.stats().batches.is_some_and(|b| b.queued == 10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    holder.rollback().await.expect("release the row");
    bookings.insert(0, first);
    let mut created = 0;
    for booking in bookings {
        match booking.await.expect("join").expect("booking") {
            Outcome::Created { .. } => created += 1,
            Outcome::SoldOut { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 5);
    let stats = batched.stats().batches.expect("batched counts its batches");
    assert_eq!(
        (stats.batches, stats.bookings, stats.largest),
        (2, 10, 9),
        "{stats:?}"
    );
    assert_eq!(state(&repo).await, (5, 5, 5));
}

/// Two processes' combiners on one night are two batches: the second waits for the first's
/// commit and grants from what is left, because the grant is computed in the statement. Ten
/// users each, five rooms: five created in all, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_combiners_on_one_night_sell_only_what_is_left() {
    let (_db, repo) = TestDb::seeded().await;
    prepare(&repo, 5, 8).await;
    let one = build(Mode::Batched, &repo);
    let other = build(Mode::Batched, &repo);
    let requests: Vec<BookingRequest> = (0..10).map(|_| request()).collect();
    let (a, b) = tokio::join!(
        common::race(one, requests.clone()),
        common::race(other, requests.iter().map(|_| request()).collect())
    );
    let created = a
        .iter()
        .chain(&b)
        .filter(|o| matches!(o, Ok(Outcome::Created { .. })))
        .count();
    let refused = a
        .iter()
        .chain(&b)
        .filter(|o| matches!(o, Ok(Outcome::SoldOut { .. })))
        .count();
    assert_eq!((created, refused), (5, 15));
    assert_eq!(state(&repo).await, (5, 5, 5));
}
