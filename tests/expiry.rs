//! Locks that stop being valid: each situation built deterministically (a key held by a
//! blocker for a known time, a TTL shorter than the work, a key deleted mid-booking, a fencing
//! counter lost), each asserted on the database. Every test has its own database and key
//! prefix.

mod common;

use std::sync::Arc;
use std::time::Duration;

use booking_cli::domain::{BookingRequest, Outcome, RoomId, Stay, UserId};
use booking_cli::error::BookingError;
use booking_cli::lock::redlock::RedLock;
use booking_cli::lock::{LockPolicy, RedisLock};
use booking_cli::repo::Repo;
use booking_cli::strategy::{Mode, Strategy};
use common::{TestDb, private_lock, retry_policy};

fn request(room: i32, from: &str, nights: u32) -> BookingRequest {
    BookingRequest {
        user: UserId::random(),
        room: RoomId::new(room).unwrap(),
        stay: Stay::nights_from(from.parse().unwrap(), nights).unwrap(),
    }
}

fn lock_policy(ttl_ms: u64, wait_ms: Option<u64>) -> LockPolicy {
    LockPolicy {
        ttl: Duration::from_millis(ttl_ms),
        retries: 1_000,
        retry_delay: Duration::from_millis(20),
        wait: wait_ms.map(Duration::from_millis),
        renew: false,
        replicas: 0,
    }
}

fn build(
    mode: Mode,
    repo: &Repo,
    lock: Option<RedisLock>,
    redlock: Option<RedLock>,
    policy: LockPolicy,
    hold_ms: u64,
) -> Arc<dyn Strategy> {
    let mut context = common::context(repo, lock, redlock, policy, hold_ms);
    context.tuning.retry = retry_policy(0);
    common::build_with(mode, context)
}

/// (booked_count, confirmed rows) of every night of the request's stay.
async fn state(repo: &Repo, request: &BookingRequest) -> Vec<(i32, i64)> {
    repo.slot_state(request.room, &request.stay)
        .await
        .unwrap()
        .iter()
        .map(|n| (n.booked_count, n.confirmed_bookings))
        .collect()
}

/// A two-night stay: the user takes night 1 (TTL 3 s) while night 2 stays held by someone
/// else for 4 s. Waiting that long on night 1's lock would book on an expired lock; instead the
/// user gives night 1 back before it expires and takes the pair again once night 2 is free.
///
/// The TTL is long so that the give-back is certain, not likely: it happens a tenth of the TTL
/// (300 ms) before night 1's lock expires, and a release on a loaded CI machine once took more
/// than the 60 ms a 600 ms TTL left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_never_books_on_a_night_whose_lock_expired_while_it_waited_for_the_next() {
    let (_db, repo) = TestDb::seeded().await;
    let lock = private_lock().await;
    let stay = request(2, "2024-12-25", 2);
    let night_2 = lock.room_night_key(stay.room, "2024-12-26".parse().unwrap());
    let blocker = lock
        .try_acquire(&night_2, Duration::from_millis(4000))
        .await
        .unwrap()
        .expect("night 2 is free");

    let locked = build(
        Mode::Locked,
        &repo,
        Some(lock.with_fresh_stats()),
        None,
        lock_policy(3_000, Some(20_000)),
        0,
    );
    let outcome = locked.book(&stay).await.expect("books");
    assert!(matches!(outcome, Outcome::Created { .. }), "{outcome:?}");
    let stats = locked.stats().lock.expect("lock stats");
    assert_eq!(
        stats.locks_expired_before_release, 0,
        "every lock was still ours when released: {stats:?}"
    );
    assert!(
        stats.locks_acquired >= 3,
        "night 1 was given back and taken again: {stats:?}"
    );
    assert_eq!(state(&repo, &stay).await, vec![(1, 1), (1, 1)]);
    drop(blocker); // expired at its TTL

    // With fixed retries there is no deadline to start over within: the user is refused
    // rather than booking on the expired night-1 lock.
    let blocker = lock
        .try_acquire(&night_2, Duration::from_millis(4000))
        .await
        .unwrap()
        .expect("night 2 is free again");
    let fixed = build(
        Mode::Locked,
        &repo,
        Some(lock.with_fresh_stats()),
        None,
        lock_policy(3_000, None),
        0,
    );
    let again = request(2, "2024-12-25", 2);
    let outcome = fixed.book(&again).await.expect("answers");
    assert!(
        matches!(outcome, Outcome::LockNotAcquired { .. }),
        "{outcome:?}"
    );
    assert_eq!(fixed.stats().lock.unwrap().locks_expired_before_release, 0);
    assert_eq!(
        state(&repo, &stay).await,
        vec![(1, 1), (1, 1)],
        "nothing more written"
    );
    drop(blocker);
}

/// Redlock's validity is enforced before commit: a booking whose work outlasts it (TTL 300 ms,
/// 600 ms of work) is rolled back and refused, not committed on a lock a majority may have
/// handed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_rolls_back_a_booking_that_outlived_its_validity() {
    let (_db, repo) = TestDb::seeded().await;
    let prefix = common::test_prefix();
    let redlock = RedLock::connect(&[common::redis_url()], &prefix)
        .await
        .unwrap();
    let stay = request(2, "2024-12-25", 1);
    let slow = build(
        Mode::Redlock,
        &repo,
        None,
        Some(redlock.clone()),
        lock_policy(300, Some(1_000)),
        600,
    );
    let outcome = slow.book(&stay).await.expect("answers");
    assert!(
        matches!(outcome, Outcome::LockExpired { .. }),
        "{outcome:?}"
    );
    assert_eq!(state(&repo, &stay).await, vec![(0, 0)], "rolled back");

    // Work that fits the validity commits as usual.
    let quick = build(
        Mode::Redlock,
        &repo,
        None,
        Some(redlock),
        lock_policy(5_000, Some(1_000)),
        50,
    );
    let outcome = quick.book(&stay).await.expect("books");
    assert!(matches!(outcome, Outcome::Created { .. }), "{outcome:?}");
    assert_eq!(state(&repo, &stay).await, vec![(1, 1)]);
}

/// `--lock-renew`: someone deletes the held key mid-booking (an operator, a failover). The next
/// renewal finds the lock gone; the booking, still in its hold, is abandoned and rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_abandons_the_booking_and_writes_nothing() {
    let (_db, repo) = TestDb::seeded().await;
    let lock = private_lock().await;
    let stay = request(2, "2024-12-25", 1);
    let key = lock.room_night_key(stay.room, stay.stay.from());
    let mut policy = lock_policy(300, Some(1_000));
    policy.renew = true;
    let locked = build(Mode::Locked, &repo, Some(lock.clone()), None, policy, 1_000);
    let booking = {
        let locked = Arc::clone(&locked);
        tokio::spawn(async move { locked.book(&stay).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deleted: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "the booking held its lock");
    let result = booking.await.unwrap();
    assert!(
        matches!(result, Err(BookingError::LockLost(_))),
        "{result:?}"
    );
    assert_eq!(
        state(&repo, &stay).await,
        vec![(0, 0)],
        "abandoned, rolled back"
    );
}

/// The second half of fencing after Redis lost its counter: holder A draws token 1 and claims
/// the night, then works on while its lock expires; Redis loses the counter; B takes the lock,
/// is handed token 1 again, raises the counter past what PostgreSQL accepted, and books. A's
/// write — token 1, from before the loss — is fenced out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_token_predates_a_lost_counter_is_still_fenced_out() {
    let (_db, repo) = TestDb::seeded().await;
    let lock = private_lock().await;
    let stay = request(1, "2024-12-25", 1);
    repo.prepare_slot(stay.room, &stay.stay, 2, 8)
        .await
        .unwrap();
    let a = build(
        Mode::Fenced,
        &repo,
        Some(lock.clone()),
        None,
        lock_policy(200, Some(1_000)),
        800,
    );
    let holder_a = { tokio::spawn(async move { a.book(&stay).await }) };
    // A is in its hold; its 200 ms lock has expired by 400 ms.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let counter = format!("{}fence:{{room:1}}:2024-12-25", lock.key_prefix());
    let deleted: i64 = redis::cmd("DEL")
        .arg(&counter)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "Redis loses the fencing counter");

    let b = build(
        Mode::Fenced,
        &repo,
        Some(lock.clone()),
        None,
        lock_policy(5_000, Some(1_000)),
        0,
    );
    let b_outcome = b
        .book(&request(1, "2024-12-25", 1))
        .await
        .expect("B answers");
    assert!(
        matches!(b_outcome, Outcome::Created { .. }),
        "B books after the loss: {b_outcome:?}"
    );
    let a_outcome = holder_a.await.unwrap().expect("A answers");
    assert!(
        matches!(a_outcome, Outcome::FencedOut { .. }),
        "A's token predates the loss: {a_outcome:?}"
    );
    assert_eq!(
        state(&repo, &stay).await,
        vec![(1, 1)],
        "one booking, counted once"
    );
}

/// The set is checked once more when it is complete: a lock whose `SET` was answered only after
/// its validity had passed (Redis frozen for 400 ms with the command in flight, TTL 200 ms) is
/// not relied on. With fixed retries the user is refused; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_granted_after_its_validity_is_not_used() {
    let (_db, repo) = TestDb::seeded().await;
    let redis = common::PrivateRedis::start().await;
    let lock = RedisLock::connect(&redis.url(), "")
        .await
        .expect("private redis");
    let stay = request(2, "2024-12-25", 1);
    let locked = build(
        Mode::Locked,
        &repo,
        Some(lock.clone()),
        None,
        lock_policy(200, None),
        0,
    );
    redis.pause();
    let booking = {
        let locked = Arc::clone(&locked);
        tokio::spawn(async move { locked.book(&stay).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    redis.resume();
    let outcome = booking.await.unwrap().expect("answers");
    assert!(
        matches!(outcome, Outcome::LockNotAcquired { .. }),
        "{outcome:?}"
    );
    assert_eq!(state(&repo, &stay).await, vec![(0, 0)]);
    let stats = locked.stats().lock.expect("lock stats");
    assert_eq!(
        (stats.locks_acquired, stats.locks_released),
        (1, 1),
        "taken, found too old, given back: {stats:?}"
    );
}
