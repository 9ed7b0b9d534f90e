//! The Redis lock on its own, against the real Redis (each test under its own key prefix).

mod common;

use std::time::Duration;

use booking_cli::lock::{Acquired, Released};
use common::{policy, private_lock};

#[tokio::test]
async fn a_second_acquire_fails_while_the_lock_is_held() {
    let lock = private_lock().await;
    let key = format!("{}lock:room:1:2024-12-25", lock.key_prefix());
    let first = lock
        .try_acquire(&key, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a free key is acquired");
    let second = lock
        .try_acquire(&key, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(second.is_none(), "a held key must not be acquired again");

    // With retries, still busy: every attempt is counted.
    match lock.acquire(&key, &policy(5000, 2, 10)).await.unwrap() {
        Acquired::Busy { attempts } => assert_eq!(attempts, 3),
        other => panic!("acquired a held lock: {other:?}"),
    }
    assert_eq!(lock.release(first).await.unwrap(), Released::Released);
    assert!(lock.leftover_keys().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_release_with_another_holders_token_deletes_nothing() {
    let lock = private_lock().await;
    let key = lock.room_night_key("1".parse().unwrap(), "2024-12-25".parse().unwrap());
    // A takes the lock with a short TTL and is "paused" past it; B takes the free key.
    let a = lock
        .try_acquire(&key, Duration::from_millis(50))
        .await
        .unwrap()
        .expect("free key");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let b = lock
        .try_acquire(&key, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the expired key is free again");
    assert_ne!(a.token(), b.token(), "tokens are random per acquisition");

    // A's release finds B's token: it must not delete B's lock.
    assert_eq!(lock.release(a).await.unwrap(), Released::Stolen);
    assert_eq!(
        lock.leftover_keys().await.unwrap(),
        vec![key.clone()],
        "B's lock must survive A's release"
    );
    assert!(
        lock.try_acquire(&key, Duration::from_secs(5))
            .await
            .unwrap()
            .is_none(),
        "B still holds the key"
    );
    assert_eq!(lock.release(b).await.unwrap(), Released::Released);
    assert_eq!(lock.stats().locks_expired_before_release, 1);
}

#[tokio::test]
async fn the_key_expires_after_its_ttl() {
    let lock = private_lock().await;
    let key = format!("{}lock:room:2:2024-12-25", lock.key_prefix());
    let guard = lock
        .try_acquire(&key, Duration::from_millis(100))
        .await
        .unwrap()
        .expect("free key");
    assert!(exists(&key).await, "held");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!exists(&key).await, "the key outlived its TTL");
    assert_eq!(lock.release(guard).await.unwrap(), Released::Expired);
}

#[tokio::test]
async fn an_unreachable_redis_is_a_quick_error() {
    // A closed port on loopback: refused at once.
    let started = std::time::Instant::now();
    let result = booking_cli::lock::RedisLock::connect("redis://127.0.0.1:1", "x:").await;
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn keep_alive_renews_a_held_lock_and_reports_when_it_is_lost() {
    let lock = private_lock().await;
    let key = format!("{}lock:room:3:2024-12-25", lock.key_prefix());
    let guard = lock
        .try_acquire(&key, Duration::from_millis(150))
        .await
        .unwrap()
        .expect("free key");
    // Renewed every 50 ms, the 150 ms lock outlives three TTLs.
    let alive = tokio::time::timeout(
        Duration::from_millis(500),
        lock.keep_alive(std::slice::from_ref(&guard), Duration::from_millis(150)),
    )
    .await;
    assert!(alive.is_err(), "keep_alive must still be renewing");
    assert!(exists(&key).await, "renewed past three TTLs");

    // Someone deletes the key (an operator, a failover): the next renewal notices.
    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let lost = tokio::time::timeout(
        Duration::from_secs(2),
        lock.keep_alive(std::slice::from_ref(&guard), Duration::from_millis(150)),
    )
    .await
    .expect("keep_alive returns when the lock is lost");
    assert!(lost.contains("was lost"), "{lost}");
    assert_eq!(lock.release(guard).await.unwrap(), Released::Expired);
}

#[tokio::test]
async fn a_waiter_is_woken_by_the_release_not_by_its_pause() {
    let lock = private_lock().await;
    let key = format!("{}lock:room:3:2024-12-25", lock.key_prefix());
    let holder = lock
        .try_acquire(&key, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free key");
    // One retry, 2 s away: only a release notification can end the wait sooner.
    let waiter = {
        let lock = lock.clone();
        let key = key.clone();
        tokio::spawn(async move { lock.acquire(&key, &policy(30_000, 1, 2_000)).await })
    };
    // Let the waiter find the key busy and subscribe, then release.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lock.release(holder).await.unwrap(), Released::Released);
    let Acquired::Held(guard) = waiter.await.unwrap().unwrap() else {
        panic!("the waiter must get the released lock on its one retry");
    };
    let stats = lock.stats();
    assert_eq!(
        stats.lock_waits_woken_by_release, 1,
        "the retry must have been triggered by the release notification, not the 2 s pause"
    );
    assert_eq!(stats.lock_busy_attempts, 1);
    assert_eq!(lock.release(guard).await.unwrap(), Released::Released);
    assert!(lock.leftover_keys().await.unwrap().is_empty());
}

/// A release that fails (Redis gone) is not silently forgotten: its hold time is recorded and
/// it counts as a lock lost.
#[tokio::test]
async fn a_failed_release_counts_as_a_lost_lock_with_its_hold_time() {
    let mut redis = common::PrivateRedis::start().await;
    let lock = booking_cli::lock::RedisLock::connect(&redis.url(), "")
        .await
        .expect("private redis");
    let guard = lock
        .try_acquire("lock:room:1:2024-12-25", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("free key");
    redis.kill();
    assert!(lock.release(guard).await.is_err(), "Redis is gone");
    let stats = lock.stats();
    assert_eq!(stats.locks_expired_before_release, 1, "{stats:?}");
    assert_eq!(stats.locks_released, 0);
    assert_eq!(
        stats.lock_hold.count, 1,
        "the hold time is recorded: {stats:?}"
    );
}

/// The release-notification subscription is cut (`CLIENT KILL TYPE pubsub`, as a Redis restart
/// or a network cut would): the listener notices, subscribes again, says so in the stats, and
/// the next release wakes its waiter again instead of leaving it to poll.
#[tokio::test]
async fn release_notifications_come_back_after_the_subscription_is_cut() {
    let redis = common::PrivateRedis::start().await;
    let lock = booking_cli::lock::RedisLock::connect(&redis.url(), "")
        .await
        .expect("private redis");
    let key = "lock:room:1:2024-12-25";
    // A first wait opens the subscription.
    let holder = lock
        .try_acquire(key, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free");
    let waiter = {
        let lock = lock.clone();
        tokio::spawn(async move { lock.acquire(key, &policy(30_000, 1, 10_000)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 1, "one subscription to cut");
    let started = std::time::Instant::now();
    while lock.stats().lock_notifications_resubscribed < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not subscribed again: {:?}",
            lock.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lock.stats().lock_notifications_dropped, 1);

    // The waiter's one retry is 10 s away: only a notification ends its wait sooner.
    let released_at = std::time::Instant::now();
    assert_eq!(lock.release(holder).await.unwrap(), Released::Released);
    let Acquired::Held(guard) = waiter.await.unwrap().unwrap() else {
        panic!("the waiter gets the released lock");
    };
    assert!(
        released_at.elapsed() < Duration::from_secs(3),
        "woken by the release after the resubscription, not by its pause: {:?}",
        released_at.elapsed()
    );
    assert_eq!(lock.stats().lock_waits_woken_by_release, 1);
    lock.release(guard).await.unwrap();
}

/// Whether `key` exists — asked directly, not by scanning: a shared Redis may hold millions of
/// other keys, and a scan of them could outlast a short TTL.
async fn exists(key: &str) -> bool {
    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let n: i64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    n == 1
}
