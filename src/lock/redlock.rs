//! Redlock: one lock over N independent Redis instances, held when a majority granted it.
//!
//! Taking a key: one random token; `SET key token NX PX ttl` on every instance at once, each
//! bounded by [`INSTANCE_TIMEOUT`] so a dead instance costs little; the lock is held if a
//! majority (N/2 + 1) granted it **and** time is left: the validity is the TTL minus the time
//! spent acquiring minus an allowance for clock drift between the instances
//! ([`drift`]). Otherwise the partial grants are released on every instance and the attempt
//! counts as busy. Releasing is the compare-and-delete script on every instance.
//!
//! **Failure model:** with 3 instances, one may be down and the lock still works (2 of 3 is a
//! majority). With two down no majority can answer: the attempt is an error (`no quorum`), the
//! strategy makes no booking — it fails closed.
//!
//! **Why Redlock still needs fencing for safety:** the majority only guarantees that two
//! clients cannot *acquire* the same key within one validity period. A holder that pauses past
//! its validity (GC, swap, a slow network) still believes it holds the lock while a second
//! holder acquires it on a majority — exactly the expiry scenario of `locked`, with more
//! servers. Redlock also leans on bounded clock drift and process pauses, which no
//! asynchronous system can promise. Only a check at the storage — a fencing token, as in
//! `fenced` — rejects the stale holder's write. Redlock buys availability (a Redis may die),
//! not safety under pauses.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::{
    Counters, InputError, LockError, LockPolicy, LockStats, RedisLock, Released, Waiter, Woken,
    new_token, record, snapshot,
};
use crate::stop::Stop;

/// How long one instance may take to answer one command before its vote counts as "no".
pub const INSTANCE_TIMEOUT: Duration = Duration::from_millis(250);

pub use super::drift;

/// A lock held on a majority.
#[derive(Debug)]
#[must_use = "a lock must be released with RedLock::release_all"]
pub struct RedGuard {
    key: String,
    token: String,
    acquired_at: Instant,
    /// Until when the lock is safe to rely on.
    pub valid_until: Instant,
}

/// The answer of [`RedLock::acquire_all`].
#[derive(Debug)]
pub enum RedAcquired {
    Held(Vec<RedGuard>),
    Busy { key: String, attempts: u32 },
    Interrupted,
}

impl RedGuard {
    /// Whether the lock can still be relied on now.
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The answer for one key.
enum OneKey {
    Held(RedGuard),
    Busy {
        attempts: u32,
    },
    /// Still busy when the keys already held would stop being valid.
    OutOfTime {
        attempts: u32,
    },
    Interrupted,
}

/// A lock over several Redis instances. Cheap to clone.
#[derive(Clone)]
pub struct RedLock {
    /// One handle per instance; `None` for an instance that did not answer at start.
    instances: Vec<Option<RedisLock>>,
    key_prefix: Arc<str>,
    counters: Arc<Counters>,
    stop: Stop,
}

impl RedLock {
    /// Connects to every URL. A malformed URL is an input error; an instance that does not
    /// answer is logged and counted as down — Redlock is meant to work with a minority down.
    pub async fn connect(urls: &[String], key_prefix: &str) -> Result<Self, InputError> {
        let mut instances = Vec::with_capacity(urls.len());
        for (i, url) in urls.iter().enumerate() {
            match RedisLock::connect(url, key_prefix).await {
                Ok(lock) => instances.push(Some(lock)),
                Err(super::ConnectError::Input(input)) => return Err(input),
                Err(super::ConnectError::Lock(error)) => {
                    tracing::warn!(instance = i + 1, %error, "redlock: instance down at start");
                    instances.push(None);
                }
            }
        }
        Ok(Self {
            instances,
            key_prefix: Arc::from(key_prefix),
            counters: Arc::default(),
            stop: Stop::new(),
        })
    }

    /// The instances that answered at start.
    pub fn instances(&self) -> Vec<RedisLock> {
        self.instances.iter().flatten().cloned().collect()
    }

    /// How many instances must grant a lock.
    pub fn quorum(&self) -> usize {
        self.instances.len() / 2 + 1
    }

    /// The same instances, counters of their own and waiters that give up on `stop`.
    pub fn for_run(&self, stop: Stop) -> Self {
        Self {
            counters: Arc::default(),
            stop,
            ..self.clone()
        }
    }

    /// The key of one room-night, as for the single-instance lock.
    pub fn room_night_key(&self, room: crate::domain::RoomId, night: chrono::NaiveDate) -> String {
        format!("{}lock:{{room:{room}}}:{night}", self.key_prefix)
    }

    /// One attempt on every instance at once.
    async fn try_once(&self, key: &str, ttl: Duration) -> Result<Option<RedGuard>, LockError> {
        let token = new_token();
        let started = Instant::now();
        let mut votes = JoinSet::new();
        for instance in self.instances.iter().flatten() {
            let (instance, key, token) = (instance.clone(), key.to_owned(), token.clone());
            votes.spawn(async move {
                tokio::time::timeout(INSTANCE_TIMEOUT, instance.set_nx(&key, &token, ttl)).await
            });
        }
        let (mut granted, mut answered) = (0, 0);
        while let Some(vote) = votes.join_next().await {
            if let Ok(Ok(Ok(ok))) = vote {
                answered += 1;
                granted += usize::from(ok);
            }
        }
        let validity = ttl
            .saturating_sub(started.elapsed())
            .saturating_sub(drift(ttl));
        if granted >= self.quorum() && !validity.is_zero() {
            return Ok(Some(RedGuard {
                key: key.to_owned(),
                token,
                acquired_at: Instant::now(),
                // Each instance started the TTL after the votes were sent: from `started` on,
                // the lock is safe for `TTL − drift` (the validity left now is what remains).
                valid_until: started + ttl.saturating_sub(drift(ttl)),
            }));
        }
        // No majority (or no time left): give back what was granted.
        self.release_everywhere(key, &token).await;
        if answered < self.quorum() {
            return Err(LockError::NoQuorum {
                answered,
                of: self.instances.len(),
            });
        }
        Ok(None)
    }

    /// Takes every key in order (ascending dates), waiting per `policy`; on a busy key or an
    /// error, what was taken is released. As for the single-instance lock, waiting for a later
    /// key never outlasts the validity of the earlier ones, and the set is handed over only if
    /// every lock is valid at that instant (see `lock` for the rule).
    pub async fn acquire_all(
        &self,
        keys: Vec<String>,
        policy: &LockPolicy,
    ) -> Result<RedAcquired, LockError> {
        let started = Instant::now();
        'round: loop {
            let mut held: Vec<RedGuard> = Vec::with_capacity(keys.len());
            for key in &keys {
                let until = held
                    .iter()
                    .map(|guard| guard.valid_until)
                    .min()
                    .map(|valid| valid - super::give_back_margin(policy.ttl));
                let begun = Instant::now();
                let result = self.acquire_one(key, policy, started, until).await;
                record(&self.counters.wait, begun.elapsed());
                let attempts = match result {
                    Ok(OneKey::Held(guard)) => {
                        held.push(guard);
                        continue;
                    }
                    Ok(OneKey::OutOfTime { attempts }) => attempts,
                    Ok(OneKey::Busy { attempts }) => {
                        self.release_all(held).await;
                        return Ok(RedAcquired::Busy {
                            key: key.clone(),
                            attempts,
                        });
                    }
                    Ok(OneKey::Interrupted) => {
                        self.release_all(held).await;
                        return Ok(RedAcquired::Interrupted);
                    }
                    Err(error) => {
                        self.release_all(held).await;
                        return Err(error);
                    }
                };
                self.release_all(held).await;
                if policy.wait.is_some_and(|wait| started.elapsed() < wait) {
                    continue 'round;
                }
                return Ok(RedAcquired::Busy {
                    key: key.clone(),
                    attempts,
                });
            }
            if let Some(expired) = held.iter().find(|guard| !guard.is_valid()) {
                let key = expired.key.clone();
                self.release_all(held).await;
                if policy.wait.is_some_and(|wait| started.elapsed() < wait) {
                    continue 'round;
                }
                return Ok(RedAcquired::Busy { key, attempts: 1 });
            }
            return Ok(RedAcquired::Held(held));
        }
    }

    async fn acquire_one(
        &self,
        key: &str,
        policy: &LockPolicy,
        started: Instant,
        until: Option<Instant>,
    ) -> Result<OneKey, LockError> {
        let mut attempt: u32 = 0;
        // Releases publish on every instance; listening to one live instance is enough.
        let mut waiter: Option<Waiter> = None;
        loop {
            attempt += 1;
            if let Some(guard) = self.try_once(key, policy.ttl).await? {
                self.counters.acquired.fetch_add(1, Ordering::Relaxed);
                tracing::info!(key, token = %guard.token, attempt, "redlock acquired on a majority");
                return Ok(OneKey::Held(guard));
            }
            self.counters.busy_attempts.fetch_add(1, Ordering::Relaxed);
            let Some(pause) = policy.next_pause(attempt, started.elapsed()) else {
                return Ok(OneKey::Busy { attempts: attempt });
            };
            let pause = match until.map(|until| until.saturating_duration_since(Instant::now())) {
                None => pause,
                Some(left) if left.is_zero() => return Ok(OneKey::OutOfTime { attempts: attempt }),
                Some(left) => pause.min(left),
            };
            // Watched step by step (`interleave`): the watcher says when to try again.
            if crate::steps::waiting(|| format!("the Redlock {key}")).await {
                continue;
            }
            let waiter = match waiter {
                Some(ref waiter) => waiter,
                // A busy answer means a majority answered, so some instance is live.
                None => waiter.insert(match self.instances.iter().flatten().next() {
                    Some(instance) => instance.release_waiter(key).await,
                    None => Waiter::polling(),
                }),
            };
            let woken = self
                .counters
                .note_wake(waiter.wait(pause, &self.stop).await);
            if woken == Woken::Stopped {
                return Ok(OneKey::Interrupted);
            }
        }
    }

    async fn release_everywhere(&self, key: &str, token: &str) -> usize {
        let mut releases = JoinSet::new();
        for instance in self.instances.iter().flatten() {
            let (instance, key, token) = (instance.clone(), key.to_owned(), token.to_owned());
            releases.spawn(async move {
                tokio::time::timeout(INSTANCE_TIMEOUT, instance.compare_and_delete(&key, &token))
                    .await
            });
        }
        let mut ours = 0;
        while let Some(release) = releases.join_next().await {
            if let Ok(Ok(Ok(Released::Released))) = release {
                ours += 1;
            }
        }
        ours
    }

    /// Releases on every instance, in reverse order of taking. A lock still ours on fewer than
    /// a majority had expired (or was re-taken) before release: counted and logged.
    pub async fn release_all(&self, held: Vec<RedGuard>) {
        for guard in held.into_iter().rev() {
            record(&self.counters.hold, guard.acquired_at.elapsed());
            let ours = self.release_everywhere(&guard.key, &guard.token).await;
            if ours >= self.quorum() {
                self.counters.released.fetch_add(1, Ordering::Relaxed);
                tracing::info!(key = %guard.key, instances = ours, "redlock released");
            } else {
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %guard.key, instances = ours, "redlock had lost its majority before release");
            }
        }
    }

    pub fn stats(&self) -> LockStats {
        snapshot(&self.counters)
    }
}
