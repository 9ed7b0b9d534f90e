//! A Redis lock per room-night: `SET key token NX PX ttl` to take it, a Lua compare-and-delete to
//! give it back.
//!
//! Why each part is there:
//! - **`NX`** makes the take atomic: of all the users racing for a free key, Redis lets exactly
//!   one `SET` through. There is no "check, then set" window.
//! - **A random 128-bit token** identifies *this* holding. A token built from the time (as the
//!   reference implementation's was) can collide between two users who acquire in the same
//!   instant, and then one of them can release the other's lock.
//! - **The TTL (`PX`)** bounds how long a crashed holder blocks everyone else. It is also the
//!   lock's weakness: if the holder is still working when it expires, a second holder gets in.
//!   The TTL must be longer than the critical section; [`Released::Expired`] and
//!   [`Released::Stolen`] make the breach visible instead of silent.
//! - **Release is a Lua compare-and-delete**, because `GET` then `DEL` from the client is itself a
//!   race: between the two, the key can expire and be taken by someone else, whose lock we would
//!   then delete. The script runs atomically inside Redis.
//! - **Release is an explicit `async fn`**, not a `Drop`: dropping cannot await a network round
//!   trip. A [`LockGuard`] that is dropped without release still frees itself when the TTL ends,
//!   which is exactly the crashed-holder case the TTL exists for.
//! - **A lock is used only while it is valid.** A guard knows until when it can be relied on:
//!   the instant its `SET` was *sent*, plus the TTL, minus a clock-drift allowance ([`drift`]) —
//!   the validity Redlock computes. [`RedisLock::acquire_all`] never waits for a later night
//!   past the validity of the nights it already holds (it gives them back and starts over, or
//!   gives up), and hands over the set only if every lock in it is still valid at that instant:
//!   so a critical section never *starts* on an expired lock, whatever `--lock-wait-ms` is next
//!   to `--lock-ttl-ms`. One that outlives its locks midway is the expiry problem fencing
//!   tokens (`fenced`) exist for.
//!
//! The protocol (take, give back, extend, fence) is this file; the rest of the folder:
//! `policy.rs` (TTL, retries, margins), `stats.rs` (what the lock did), `connection.rs` (one
//! instance or a cluster), [`cluster`] (Redis Cluster), [`redlock`] (a majority of
//! instances), `wake.rs` (waiters woken by a release), [`failover`] (the lab's failover),
//! `admin.rs` (faults, health, leftovers, `db drop`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, Script, ToRedisArgs, Value};
use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::domain::RoomId;
use crate::error::InputError;
use crate::metrics::{Latencies, Percentiles};
use crate::stop::Stop;

/// `SET KEYS[1] ARGV[1] NX PX ARGV[2]`, and when it set the key, `INCR KEYS[2]`: returns the new
/// fencing token, or 0 when the lock is held by someone else.
const ACQUIRE_FENCED_SCRIPT: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return redis.call('INCR', KEYS[2])
end
return 0
";

/// Raises the fencing counter KEYS[2] to at least ARGV[2] and draws the next token from it, only
/// while the lock KEYS[1] still holds our token ARGV[1]; 0 when it does not. Used after Redis lost
/// the counter (a restart without persistence, a deleted key): only the current holder may
/// move it past the newest token PostgreSQL accepted.
const RAISE_FENCE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
local current = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if current < tonumber(ARGV[2]) then
    redis.call('SET', KEYS[2], ARGV[2])
end
return redis.call('INCR', KEYS[2])
";

/// Extends the key's TTL to ARGV[2] ms only if it still holds our token ARGV[1]: 1 if extended.
const EXTEND_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// The release: compare-and-delete, and a `PUBLISH` that wakes the key's waiters (the script
/// documents its answers).
const RELEASE_SCRIPT: &str = include_str!("release.lua");

/// How long a lock waits for its replicas' acknowledgement (`--lock-replicas`).
pub const REPLICA_WAIT: Duration = Duration::from_millis(200);

/// How long connecting to Redis, and each command, may take before it is an error. A lock that
/// cannot reach Redis must fail closed, quickly — never hang a booking.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(3);

mod admin;
pub mod cluster;
mod connection;
pub mod failover;
mod policy;
pub mod redlock;
mod stats;
mod wake;

use connection::Conn;
pub use connection::ConnectError;
pub use policy::{LockPolicy, drift, give_back_margin};
pub use stats::LockStats;
use stats::{Counters, record, snapshot};

pub use wake::Woken;
use wake::{Releases, Waiter};

pub use crate::error::LockError;

/// A lock this process holds. It is released only by [`RedisLock::release`]; see the module
/// docs for why there is no `Drop`.
#[derive(Debug)]
#[must_use = "a lock must be released with RedisLock::release, or it blocks others until its TTL"]
pub struct LockGuard {
    key: String,
    token: String,
    /// The fencing token drawn with the lock (for fenced keys).
    fence: Option<u64>,
    /// The counter the token was drawn from (for fenced keys).
    fence_key: Option<String>,
    acquired_at: Instant,
    /// Until when the lock can be relied on: `TTL − drift` after the `SET` was sent.
    valid_until: Instant,
}

impl LockGuard {
    /// Whether the lock can still be relied on now (see [`drift`]).
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }

    /// Until when the lock can be relied on.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// The fencing token: larger than that of every earlier holder of this key.
    pub fn fence(&self) -> Option<u64> {
        self.fence
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

/// A key to lock, and for fenced locks the counter its fencing tokens are drawn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockKey {
    pub key: String,
    pub fence: Option<String>,
}

impl LockKey {
    pub fn plain(key: &str) -> Self {
        Self {
            key: key.to_owned(),
            fence: None,
        }
    }
}

/// The answer of [`RedisLock::acquire_all`].
#[derive(Debug)]
pub enum AcquiredAll {
    /// Every lock, in the order asked.
    Held(Vec<LockGuard>),
    /// This key stayed busy; nothing is held.
    Busy { key: String, attempts: u32 },
    /// The run was interrupted while waiting; nothing is held.
    Interrupted,
}

/// The answer of [`RedisLock::acquire`].
#[derive(Debug)]
pub enum Acquired {
    Held(LockGuard),
    /// Someone else held the key on every attempt.
    Busy {
        attempts: u32,
    },
    /// Still busy when the locks already held would stop being valid: waiting longer would
    /// hand over an expired set.
    OutOfTime {
        attempts: u32,
    },
    /// The run was interrupted while waiting.
    Interrupted,
}

/// What the compare-and-delete found at release time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The key still held our token and is now deleted.
    Released,
    /// The key was gone: our TTL ran out while we were still working.
    Expired,
    /// The key held another token: ours expired and someone else took the lock. Nothing was
    /// deleted — their lock is intact — but for a while two holders believed they held it.
    Stolen,
}

/// A handle on the lock service. Cheap to clone: clones share one multiplexed connection (every
/// user's commands are pipelined on it; Redis answers them in order) and one set of counters.
#[derive(Clone)]
pub struct RedisLock {
    /// The connection: direct for a run (`connect`), reconnecting by itself for a server
    /// (`connect_lazy`).
    conn: Conn,
    key_prefix: Arc<str>,
    release: Arc<Script>,
    extend: Arc<Script>,
    acquire_fenced: Arc<Script>,
    raise_fence: Arc<Script>,
    counters: Arc<Counters>,
    /// Wakes this process's waiters when a key they wait for is released.
    releases: Arc<Releases>,
    /// Ctrl-C: waiters give up at their next pause.
    stop: Stop,
    /// The `--redis-cluster` seeds (empty off a cluster): the failover lab reaches the nodes
    /// with their scheme and credentials.
    cluster_seeds: Arc<[String]>,
}

impl RedisLock {
    /// The same connection, with counters of its own: one per run, so that runs report
    /// separately.
    pub fn with_fresh_stats(&self) -> Self {
        Self {
            counters: Arc::default(),
            ..self.clone()
        }
    }

    /// The same connection and counters, with waiters that give up when `stop` fires.
    pub fn with_stop(&self, stop: Stop) -> Self {
        Self {
            stop,
            ..self.clone()
        }
    }

    /// The key of one room-night: `lock:{room:N}:{YYYY-MM-DD}` after the prefix. The braces
    /// are a Redis Cluster hash tag: only `room:N` is hashed, so every night of a room and its
    /// fencing counters live in one slot — the acquire-and-draw script and the fence raise,
    /// which touch a lock and its counter together, never fail with `CROSSSLOT`. (On one Redis
    /// the braces are just characters.)
    pub fn room_night_key(&self, room: RoomId, night: NaiveDate) -> String {
        format!("{}lock:{{room:{room}}}:{night}", self.key_prefix)
    }

    /// The lock of one room-night, with its fencing counter `fence:{room:N}:{YYYY-MM-DD}`
    /// (same slot) when `fenced`.
    pub fn room_night(&self, room: RoomId, night: NaiveDate, fenced: bool) -> LockKey {
        LockKey {
            key: self.room_night_key(room, night),
            fence: fenced.then(|| format!("{}fence:{{room:{room}}}:{night}", self.key_prefix)),
        }
    }

    /// The key prefix in use (empty by default).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// One `SET key token NX PX ttl`: the lock if the key was free, `None` if someone holds it.
    pub async fn try_acquire(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LockGuard>, LockError> {
        self.try_acquire_with(&LockKey::plain(key), ttl, 0).await
    }

    /// Like [`try_acquire`](Self::try_acquire); for a fenced key, the same script also
    /// increments the fencing counter and the guard carries the new value.
    ///
    /// With `replicas` > 0 (`--lock-replicas`), a lock is held only once that many replicas
    /// acknowledged it (`WAIT`, within [`REPLICA_WAIT`]); otherwise it is given back at once and
    /// the attempt counts as busy — fail closed, since a lock only the primary has dies with it.
    async fn try_acquire_with(
        &self,
        key: &LockKey,
        ttl: Duration,
        replicas: u32,
    ) -> Result<Option<LockGuard>, LockError> {
        let token = new_token();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        // Redis starts the TTL when it receives the command, which is after this instant.
        let sent = Instant::now();
        let fence = match &key.fence {
            None => {
                if !self.set_nx(&key.key, &token, ttl).await? {
                    return Ok(None);
                }
                None
            }
            Some(fence_key) => {
                // Taking the lock and drawing the token in one script: no holder can ever
                // hold the lock without a token newer than every earlier holder's.
                let fence: u64 = self
                    .eval(
                        &self.acquire_fenced,
                        (key.key.as_str(), fence_key.as_str()),
                        (token.as_str(), ttl_ms),
                    )
                    .await?;
                if fence == 0 {
                    return Ok(None);
                }
                Some(fence)
            }
        };
        if replicas > 0 && !self.replicated(&key.key, replicas).await? {
            self.counters.unreplicated.fetch_add(1, Ordering::Relaxed);
            tracing::info!(key = %key.key, replicas, "lock not acknowledged by the replicas in time; given back");
            self.compare_and_delete(&key.key, &token).await?;
            return Ok(None);
        }
        Ok(Some(LockGuard {
            key: key.key.clone(),
            token,
            fence,
            fence_key: key.fence.clone(),
            acquired_at: Instant::now(),
            valid_until: sent + ttl.saturating_sub(drift(ttl)),
        }))
    }

    /// `WAIT replicas` on the node that holds `key`: whether that many replicas acknowledged
    /// every write this connection made so far (the `SET NX` just sent among them). `WAIT`
    /// does not make Redis strongly consistent — a replica that acknowledged may still lose the
    /// write in a later failover — but a lock no replica has is certain to die with its primary.
    async fn replicated(&self, key: &str, replicas: u32) -> Result<bool, LockError> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas)
            .arg(u64::try_from(REPLICA_WAIT.as_millis()).unwrap_or(u64::MAX));
        let acknowledged: i64 = match &self.conn {
            Conn::Cluster(cluster) => {
                use redis::cluster_routing::{
                    Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr,
                };
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_slot(Slot::for_key(key), SlotAddr::Master),
                ));
                let answer = cluster.clone().route_command(wait, route).await?;
                i64::from_redis_value(answer).map_err(redis::RedisError::from)?
            }
            _ => wait.query_async(&mut self.conn.clone()).await?,
        };
        Ok(acknowledged >= i64::from(replicas))
    }

    /// Takes the locks of `keys` one by one, in the order given (callers give ascending date
    /// order; see `strategy::locked` for why that cannot deadlock). If one stays busy or Redis
    /// fails, the locks already taken are released before returning.
    ///
    /// The set is handed over only if every lock in it is valid at that instant. Waiting for a
    /// later key never outlasts the validity of the earlier ones: when it would, they are given
    /// back, and with a deadline policy the whole set is taken again from the first key while
    /// the deadline allows (with fixed retries, the user is refused as for a busy lock).
    pub async fn acquire_all(
        &self,
        keys: Vec<LockKey>,
        policy: &LockPolicy,
    ) -> Result<AcquiredAll, LockError> {
        let started = Instant::now();
        'round: loop {
            let mut held: Vec<LockGuard> = Vec::with_capacity(keys.len());
            for key in &keys {
                let until = held
                    .iter()
                    .map(LockGuard::valid_until)
                    .min()
                    .map(|valid| valid - give_back_margin(policy.ttl));
                let answer = self.acquire_key(key, policy, started, until).await;
                let attempts = match answer {
                    Ok(Acquired::Held(guard)) => {
                        held.push(guard);
                        continue;
                    }
                    Ok(Acquired::OutOfTime { attempts }) => attempts,
                    Ok(Acquired::Busy { attempts }) => {
                        self.release_all(held).await;
                        return Ok(AcquiredAll::Busy {
                            key: key.key.clone(),
                            attempts,
                        });
                    }
                    Ok(Acquired::Interrupted) => {
                        self.release_all(held).await;
                        return Ok(AcquiredAll::Interrupted);
                    }
                    Err(error) => {
                        self.release_all(held).await;
                        return Err(error);
                    }
                };
                // The earlier locks would expire before this one is free: give them back
                // while they are still ours.
                tracing::info!(key = %key.key, attempts, "the locks already held would expire first; starting over");
                self.release_all(held).await;
                if policy.wait.is_some_and(|wait| started.elapsed() < wait) {
                    continue 'round;
                }
                return Ok(AcquiredAll::Busy {
                    key: key.key.clone(),
                    attempts,
                });
            }
            // The critical section starts when this returns: only on locks that are all valid.
            if let Some(expired) = held.iter().find(|guard| !guard.is_valid()) {
                let key = expired.key.clone();
                tracing::info!(%key, "a lock expired before the set was complete; starting over");
                self.release_all(held).await;
                if policy.wait.is_some_and(|wait| started.elapsed() < wait) {
                    continue 'round;
                }
                return Ok(AcquiredAll::Busy { key, attempts: 1 });
            }
            return Ok(AcquiredAll::Held(held));
        }
    }

    /// Releases in reverse order of taking. A release that fails (Redis gone) is logged, not
    /// returned: the booking's fate is already decided, and the key frees itself at its TTL.
    pub async fn release_all(&self, held: Vec<LockGuard>) {
        for guard in held.into_iter().rev() {
            let key = guard.key.clone();
            if let Err(error) = self.release(guard).await {
                tracing::warn!(%key, %error, "lock release failed; the key expires at its TTL");
            }
        }
    }

    /// Takes the lock, waiting for a busy key as `policy` says (see [`LockPolicy`]).
    pub async fn acquire(&self, key: &str, policy: &LockPolicy) -> Result<Acquired, LockError> {
        self.acquire_key(&LockKey::plain(key), policy, Instant::now(), None)
            .await
    }

    /// One key: waiting as `policy` says, its deadline counted from `started`, and never past
    /// `until` (the validity of the locks already held).
    async fn acquire_key(
        &self,
        key: &LockKey,
        policy: &LockPolicy,
        started: Instant,
        until: Option<Instant>,
    ) -> Result<Acquired, LockError> {
        let begun = Instant::now();
        let result = self.acquire_inner(key, policy, started, until).await;
        record(&self.counters.wait, begun.elapsed());
        result
    }

    async fn acquire_inner(
        &self,
        lock_key: &LockKey,
        policy: &LockPolicy,
        started: Instant,
        until: Option<Instant>,
    ) -> Result<Acquired, LockError> {
        let key = lock_key.key.as_str();
        let mut attempt: u32 = 0;
        // Registered at the first busy attempt and kept until this acquire ends.
        let mut waiter: Option<Waiter> = None;
        loop {
            attempt += 1;
            if let Some(guard) = self
                .try_acquire_with(lock_key, policy.ttl, policy.replicas)
                .await?
            {
                self.counters.acquired.fetch_add(1, Ordering::Relaxed);
                tracing::info!(key = %key, token = %guard.token, fence = ?guard.fence, attempt, "lock acquired");
                return Ok(Acquired::Held(guard));
            }
            self.counters.busy_attempts.fetch_add(1, Ordering::Relaxed);
            let Some(pause) = policy.next_pause(attempt, started.elapsed()) else {
                tracing::info!(key = %key, attempts = attempt, "lock busy, giving up");
                return Ok(Acquired::Busy { attempts: attempt });
            };
            let pause = match until.map(|until| until.saturating_duration_since(Instant::now())) {
                None => pause,
                Some(left) if left.is_zero() => {
                    return Ok(Acquired::OutOfTime { attempts: attempt });
                }
                Some(left) => pause.min(left),
            };
            // Watched step by step (`interleave`): the watcher says when to try again.
            if crate::steps::waiting(|| format!("the Redis lock {key}")).await {
                continue;
            }
            let waiter = match waiter {
                Some(ref waiter) => waiter,
                None => waiter.insert(self.releases.waiter(key).await),
            };
            let woken = self
                .counters
                .note_wake(waiter.wait(pause, &self.stop).await);
            tracing::info!(key = %key, attempt, pause_ms = pause.as_millis(), ?woken, "lock busy, retried");
            if woken == Woken::Stopped {
                tracing::info!(key = %key, "interrupted while waiting for the lock");
                return Ok(Acquired::Interrupted);
            }
        }
    }

    /// Registers a waiter for `key`'s release notifications (see [`wake`]); Redlock waits on
    /// one instance's.
    pub(crate) async fn release_waiter(&self, key: &str) -> Waiter {
        self.releases.waiter(key).await
    }

    /// Gives the lock back if it is still ours, and says whether it was.
    ///
    /// A release that fails (Redis gone) still ends the holding: its hold time is recorded, and
    /// it counts as a lock lost, since nobody can say whether the key outlived its holder's
    /// work — it frees itself at its TTL.
    pub async fn release(&self, guard: LockGuard) -> Result<Released, LockError> {
        let answer = self.compare_and_delete(&guard.key, &guard.token).await;
        let held = guard.acquired_at.elapsed();
        record(&self.counters.hold, held);
        let released = match answer {
            Ok(released) => released,
            Err(error) => {
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                return Err(error);
            }
        };
        let held_ms = held.as_millis();
        match released {
            Released::Released => {
                self.counters.released.fetch_add(1, Ordering::Relaxed);
                tracing::info!(key = %guard.key, token = %guard.token, held_ms, "lock released");
            }
            Released::Expired | Released::Stolen => {
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    key = %guard.key,
                    token = %guard.token,
                    held_ms,
                    found = if released == Released::Expired { "no key" } else { "another holder's token" },
                    "lock had already expired before release"
                );
            }
        }
        Ok(released)
    }

    /// Raises the guard's fencing counter to at least `floor` and draws a new token above it,
    /// if the lock is still ours: `None` when it is not (or the key is not fenced).
    pub async fn raise_fence(
        &self,
        guard: &LockGuard,
        floor: u64,
    ) -> Result<Option<u64>, LockError> {
        let Some(fence_key) = &guard.fence_key else {
            return Ok(None);
        };
        let token: u64 = self
            .eval(
                &self.raise_fence,
                (guard.key.as_str(), fence_key.as_str()),
                (guard.token.as_str(), floor),
            )
            .await?;
        Ok((token > 0).then_some(token))
    }

    /// Extends a held lock to `ttl` from now, if it is still ours; says whether it was.
    pub async fn extend(&self, guard: &LockGuard, ttl: Duration) -> Result<bool, LockError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let extended: i64 = self
            .eval(
                &self.extend,
                guard.key.as_str(),
                (guard.token.as_str(), ttl_ms),
            )
            .await?;
        Ok(extended == 1)
    }

    /// Keeps `held` alive: every ttl/3, extends each lock back to a full TTL. Returns (never
    /// normally) when a renewal fails — the lock is no longer ours, or Redis is gone — so the
    /// caller can abandon work that is no longer protected.
    pub async fn keep_alive(&self, held: &[LockGuard], ttl: Duration) -> String {
        let period = (ttl / 3).max(Duration::from_millis(1));
        loop {
            tokio::time::sleep(period).await;
            for guard in held {
                match self.extend(guard, ttl).await {
                    Ok(true) => tracing::debug!(key = %guard.key, "lock renewed"),
                    Ok(false) => {
                        return format!("lock {} was lost before it could be renewed", guard.key);
                    }
                    Err(error) => {
                        return format!("lock {} could not be renewed: {error}", guard.key);
                    }
                }
            }
        }
    }

    /// `SET key token NX PX ttl` alone, without counters or logs: one instance's vote in
    /// Redlock.
    pub(crate) async fn set_nx(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, LockError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut set = redis::cmd("SET");
        set.arg(key).arg(token).arg("NX").arg("PX").arg(ttl_ms);
        // `SET … NX` answers OK when it set the key and nil when it already existed.
        Ok(set.query_async::<Value>(&mut self.conn.clone()).await? != Value::Nil)
    }

    /// Runs `script` (`EVALSHA`, loading it first if Redis does not have it) and converts
    /// its answer.
    async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: impl ToRedisArgs,
        args: impl ToRedisArgs,
    ) -> Result<T, LockError> {
        Ok(script
            .key(keys)
            .arg(args)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    /// The release script alone: deletes `key` only if it holds `token`.
    pub(crate) async fn compare_and_delete(
        &self,
        key: &str,
        token: &str,
    ) -> Result<Released, LockError> {
        let reply: i64 = self.eval(&self.release, key, token).await?;
        Ok(match reply {
            1 => Released::Released,
            0 => Released::Expired,
            _ => Released::Stolen,
        })
    }
}

/// 128 random bits from the thread-local CSPRNG (seeded from the OS), as 32 hex digits.
fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_128_bit_hex_and_differ() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
