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

/// The clock-drift allowance for a TTL: 1 % of it plus 2 ms, as the Redlock description
/// suggests. A lock is relied on only until `TTL − drift` after its `SET` was sent: Redis
/// measures the TTL on its own clock, from when it received the command.
pub fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// How long before the validity of the nights already held a wait for a later night gives up:
/// a tenth of the TTL, so that giving them back (a round trip, on a machine that may be busy)
/// still finds them ours.
pub fn give_back_margin(ttl: Duration) -> Duration {
    ttl / 10
}

pub mod cluster;
pub mod failover;
pub mod redlock;
mod wake;

pub use wake::Woken;
use wake::{Releases, Waiter};

pub use crate::error::LockError;

/// How a lock is taken: how long it lives and how patiently a busy one is retried.
///
/// Two waiting policies:
/// - **fixed retries** (the reference design): `retries` more attempts, `retry_delay` apart.
///   Every waiter sleeps the same time, so they poll in lock-step, and the budget runs out
///   while the lock is still changing hands — at inventory > 1 users are refused although
///   rooms are left.
/// - **a deadline** (`wait`): keep trying until `wait` has passed, pausing with exponential
///   backoff and full jitter (base `retry_delay`, ceiling 8 × `retry_delay`), so that waiters
///   spread out instead of colliding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LockPolicy {
    /// Lifetime of a taken lock (`PX`).
    #[serde(
        rename = "lock_ttl_ms",
        serialize_with = "as_millis",
        deserialize_with = "from_millis"
    )]
    pub ttl: Duration,
    /// Attempts after the first one; `retries = 10` means at most 11 `SET NX`. Ignored when
    /// `wait` is set.
    #[serde(rename = "lock_retries")]
    pub retries: u32,
    /// Pause between two attempts (fixed), or the base of the backoff (deadline).
    #[serde(
        rename = "lock_retry_delay_ms",
        serialize_with = "as_millis",
        deserialize_with = "from_millis"
    )]
    pub retry_delay: Duration,
    /// A deadline for taking the lock, instead of a number of retries.
    #[serde(
        rename = "lock_wait_ms",
        serialize_with = "opt_millis",
        deserialize_with = "opt_from_millis"
    )]
    pub wait: Option<Duration>,
    /// Renew held locks every ttl/3 while the work runs (`--lock-renew`).
    #[serde(rename = "lock_renew")]
    pub renew: bool,
    /// Replicas that must acknowledge a lock before it is held (`--lock-replicas`; 0: none).
    #[serde(rename = "lock_replicas", default)]
    pub replicas: u32,
}

impl LockPolicy {
    /// The pause before the next attempt, after `attempt` failed ones and `waited` so far; `None`
    /// when the policy says to give up.
    pub fn next_pause(&self, attempt: u32, waited: Duration) -> Option<Duration> {
        match self.wait {
            None if attempt <= self.retries => Some(self.retry_delay),
            None => None,
            Some(wait) => {
                // Never sleep past the deadline; one last attempt happens at it.
                let left = wait.saturating_sub(waited);
                (!left.is_zero()).then(|| self.backoff().pause(attempt).min(left))
            }
        }
    }

    /// The backoff of the deadline policy.
    pub fn backoff(&self) -> Backoff {
        let base = self.retry_delay.max(Duration::from_millis(1));
        Backoff {
            base,
            cap: base.saturating_mul(8),
        }
    }
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

fn from_millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_millis)
}

fn opt_from_millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    <Option<u64> as serde::Deserialize>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
}

fn opt_millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_millis()),
        None => s.serialize_none(),
    }
}

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

/// Counters over every lock operation of one [`RedisLock`], shared by all its clones, so a run
/// can report what the lock did without threading statistics through every call.
#[derive(Debug, Default)]
struct Counters {
    acquired: AtomicU64,
    busy_attempts: AtomicU64,
    /// Waits that a release notification ended (rather than the pause).
    woken: AtomicU64,
    released: AtomicU64,
    lost: AtomicU64,
    /// Locks given back because the replicas did not acknowledge them in time.
    unreplicated: AtomicU64,
    /// Time spent in `acquire`, successful or not. A std mutex: held for one record, never
    /// across an await.
    wait: Mutex<Latencies>,
    /// Time from taking a lock to releasing it.
    hold: Mutex<Latencies>,
}

fn record(histogram: &Mutex<Latencies>, duration: Duration) {
    // A poisoned mutex only means another thread panicked mid-record; the data is still usable.
    histogram
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .record(duration);
}

impl Counters {
    /// Counts a wait that a release ended; passes `woken` on.
    fn note_wake(&self, woken: Woken) -> Woken {
        if woken == Woken::Released {
            self.woken.fetch_add(1, Ordering::Relaxed);
        }
        woken
    }
}

fn summary(histogram: &Mutex<Latencies>) -> Percentiles {
    histogram
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .summary()
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LockStats {
    /// Locks taken.
    pub locks_acquired: u64,
    /// `SET NX` attempts that found the key held by someone else.
    pub lock_busy_attempts: u64,
    /// Waits for a busy key that a release notification ended before the pause did: waiters
    /// handed the lock, not polling for it.
    #[serde(default)]
    pub lock_waits_woken_by_release: u64,
    /// Releases that found our own token and deleted it.
    pub locks_released: u64,
    /// Releases that found the key expired or held by another token, or that failed (Redis
    /// gone): the lock may not have protected the whole critical section.
    pub locks_expired_before_release: u64,
    /// Times the release-notification subscription dropped: waiters polled until it was back.
    #[serde(default)]
    pub lock_notifications_dropped: u64,
    /// Times it was subscribed again after a drop.
    #[serde(default)]
    pub lock_notifications_resubscribed: u64,
    /// Locks taken and given back at once because fewer than `--lock-replicas` replicas
    /// acknowledged them in time.
    #[serde(default)]
    pub locks_unreplicated: u64,
    /// On a cluster: the redirections and unavailability answers its nodes sent during the run
    /// (followed and retried by the client; see [`cluster`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<cluster::Redirections>,
    /// Time spent waiting for locks (per acquire, including those that gave up).
    pub lock_wait: Percentiles,
    /// Time locks were held (per released lock).
    pub lock_hold: Percentiles,
}

impl LockStats {
    /// Adds another process's counters. Percentiles cannot be added: the merged wait and hold
    /// figures are the worse of the two (an upper bound), and the counts are summed.
    pub fn merge(&mut self, other: &LockStats) {
        self.locks_acquired += other.locks_acquired;
        self.lock_busy_attempts += other.lock_busy_attempts;
        self.lock_waits_woken_by_release += other.lock_waits_woken_by_release;
        self.locks_released += other.locks_released;
        self.locks_expired_before_release += other.locks_expired_before_release;
        self.lock_notifications_dropped += other.lock_notifications_dropped;
        self.lock_notifications_resubscribed += other.lock_notifications_resubscribed;
        self.locks_unreplicated += other.locks_unreplicated;
        self.cluster = match (self.cluster, other.cluster) {
            (Some(mut mine), Some(theirs)) => {
                mine.merge(&theirs);
                Some(mine)
            }
            (mine, theirs) => mine.or(theirs),
        };
        self.lock_wait = self.lock_wait.worst(&other.lock_wait);
        self.lock_hold = self.lock_hold.worst(&other.lock_hold);
    }
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
    /// Connects to Redis and checks that it answers. `key_prefix` goes before every key, so that
    /// tests (or several demonstrations) can share one Redis without sharing locks.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, ConnectError> {
        let client = redis::Client::open(url).map_err(bad_url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(LockError::from)?;
        let lock = Self::over(client, Conn::Direct(conn), key_prefix);
        lock.ping().await?;
        Ok(lock)
    }

    /// Whether this handle locks on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_) | Conn::LazyCluster(_))
    }

    /// A handle that connects on first use and reconnects whenever the connection breaks:
    /// `serve`, which must pick Redis up whenever it comes (back). Fails only on a bad URL.
    pub fn connect_lazy(url: &str, key_prefix: &str) -> Result<Self, ConnectError> {
        let client = redis::Client::open(url).map_err(bad_url)?;
        // Reconnecting is quick and bounded: a booking waits for it at most a few hundred
        // milliseconds beyond the connect time-out, and then fails (503 from `serve`).
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(bad_url)?;
        Ok(Self::over(client, Conn::Managed(conn), key_prefix))
    }

    fn over(client: redis::Client, conn: Conn, key_prefix: &str) -> Self {
        Self {
            conn,
            key_prefix: Arc::from(key_prefix),
            release: Arc::new(Script::new(RELEASE_SCRIPT)),
            extend: Arc::new(Script::new(EXTEND_SCRIPT)),
            acquire_fenced: Arc::new(Script::new(ACQUIRE_FENCED_SCRIPT)),
            raise_fence: Arc::new(Script::new(RAISE_FENCE_SCRIPT)),
            counters: Arc::default(),
            releases: Arc::new(Releases::new(client, key_prefix)),
            stop: Stop::new(),
            cluster_seeds: Arc::from(Vec::new()),
        }
    }

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

    /// Chaos: `CLIENT PAUSE` — Redis answers no client for `duration` (on a cluster, no node
    /// does).
    pub async fn pause_server(&self, duration: Duration) -> Result<(), LockError> {
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        if self.is_cluster() {
            return self.pause_every_node(ms).await;
        }
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("ALL")
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// One `PING`, within the command time-out: is Redis answering?
    pub async fn ping(&self) -> Result<(), LockError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// What this lock handle (and its clones) did so far, and what happened to the process's
    /// release notifications.
    pub fn stats(&self) -> LockStats {
        let (dropped, resubscribed) = self.releases.health();
        LockStats {
            lock_notifications_dropped: dropped,
            lock_notifications_resubscribed: resubscribed,
            ..snapshot(&self.counters)
        }
    }

    /// Keys under this handle's prefix that match `lock:*`: after a clean run, none.
    pub async fn leftover_keys(&self) -> Result<Vec<String>, LockError> {
        self.scan(&format!("{}lock:*", glob_escape(&self.key_prefix)))
            .await
    }

    /// Deletes every key under this handle's prefix — locks, fence counters, holds — and
    /// nothing else (`db drop`); returns how many there were.
    pub async fn delete_all(&self) -> Result<u64, LockError> {
        let mut keys = self
            .scan(&format!("{}*", glob_escape(&self.key_prefix)))
            .await?;
        // Only what is under the prefix as it is written, whatever the glob matched: the
        // prefix ends in a separator ([`crate::config::key_prefix`]), so it is whole segments.
        keys.retain(|key| !self.key_prefix.is_empty() && key.starts_with(&*self.key_prefix));
        let mut deleted = 0;
        if self.is_cluster() {
            // A multi-key command must stay in one slot: one key at a time.
            for key in &keys {
                deleted += redis::cmd("UNLINK")
                    .arg(key)
                    .query_async::<u64>(&mut self.conn.clone())
                    .await?;
            }
            return Ok(deleted);
        }
        for batch in keys.chunks(1_000) {
            deleted += redis::cmd("UNLINK")
                .arg(batch)
                .query_async::<u64>(&mut self.conn.clone())
                .await?;
        }
        Ok(deleted)
    }

    /// Every key matching the glob `pattern`, by `SCAN` (never `KEYS`: it blocks the server).
    /// On a cluster, where a `SCAN` cursor belongs to one node and the client routes it to an
    /// arbitrary one, by `KEYS`, which the client sends to every primary and whose answers it
    /// joins: acceptable for the clusters this is meant for (the lab's own, a staging one),
    /// not for a large production keyspace.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, LockError> {
        if self.is_cluster() {
            return Ok(redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut self.conn.clone())
                .await?);
        }
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut self.conn.clone())
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}

/// `text` matched literally in a Redis glob: `*`, `?`, `[`, `]` and `\` escaped.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The connection of a [`RedisLock`].
///
/// `Managed` reconnects by itself — a command that finds the connection broken (a Redis
/// restart, `CLIENT KILL`, the server's idle `timeout`) fails, and the next ones go over a new
/// one — which a long-lived `serve` needs. It costs every command a lookup and an await of the
/// manager's current connection; a run, which lasts seconds and is judged whole (a dropped
/// connection is an error it reports), keeps `Direct`.
#[derive(Clone)]
enum Conn {
    Direct(MultiplexedConnection),
    Managed(ConnectionManager),
    /// A Redis Cluster: commands routed by key slot, redirections and lost nodes handled by the
    /// client (see [`RedisLock::connect_cluster`]).
    Cluster(ClusterConnection),
    /// The same, connected on first use (`serve`): see [`RedisLock::connect_cluster_lazy`].
    LazyCluster(Arc<cluster::LazyCluster>),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Direct(c) => c.req_packed_command(cmd),
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::LazyCluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Direct(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::LazyCluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_commands(pipeline, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Direct(c) => c.get_db(),
            Conn::Managed(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::LazyCluster(_) => 0,
        }
    }
}

/// A `REDIS_URL` that does not parse: bad input.
fn bad_url(e: redis::RedisError) -> ConnectError {
    ConnectError::Input(InputError::BadUrl {
        variable: "REDIS_URL",
        what: "Redis",
        reason: e.to_string(),
    })
}

/// Why [`RedisLock::connect`] failed: a URL the user must fix, or a server that did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// A snapshot of the counters `c`.
fn snapshot(c: &Counters) -> LockStats {
    LockStats {
        locks_acquired: c.acquired.load(Ordering::Relaxed),
        lock_busy_attempts: c.busy_attempts.load(Ordering::Relaxed),
        lock_waits_woken_by_release: c.woken.load(Ordering::Relaxed),
        locks_released: c.released.load(Ordering::Relaxed),
        locks_expired_before_release: c.lost.load(Ordering::Relaxed),
        lock_notifications_dropped: 0,
        lock_notifications_resubscribed: 0,
        locks_unreplicated: c.unreplicated.load(Ordering::Relaxed),
        cluster: None,
        lock_wait: summary(&c.wait),
        lock_hold: summary(&c.hold),
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
