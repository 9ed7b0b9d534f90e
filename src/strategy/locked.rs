//! `locked`: the naive transaction inside a Redis lock on every night of the stay.
//!
//! **What it prevents:** two users of the same room-night inside the check-then-write window at
//! once, across any number of processes that share the Redis. One lock per night (not only the
//! first, as the reference implementation did), so that a stay of the 24th–26th and one of the
//! 25th–27th contend on the 25th.
//!
//! **Why no deadlock:** every user takes its nights' locks in ascending date order. Two users
//! who need the same two nights both start with the earlier one, so neither can hold the later
//! night while waiting for the earlier; a waiter holds only nights before the one it waits for.
//! A user who gives up on a busy night releases what it already took.
//!
//! **What it does not prevent:** a holder still working when its TTL ends. Then a second holder
//! gets in and the slot can be overbooked; release reports it ([`Released::Expired`] or
//! [`Released::Stolen`]). Keep `--lock-ttl-ms` well above `--hold-ms`.
//!
//! **What it costs:** waiters poll. With a fixed retry budget (`--lock-retries`), users give up
//! while the lock changes hands, so at inventory > 1 some are refused for the lock although
//! rooms are left: under-selling. A deadline (`--lock-wait-ms`) with jittered exponential
//! backoff keeps them trying as long as the deadline allows.

use std::time::Duration;

use async_trait::async_trait;

use super::naive::check_then_book;
use super::{Strategy, StrategyStats};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::lock::{Acquired, LockGuard, LockPolicy, RedisLock, Released};
use crate::repo::Repo;

pub struct Locked {
    repo: Repo,
    lock: RedisLock,
    policy: LockPolicy,
    hold: Duration,
}

impl Locked {
    pub fn new(repo: Repo, lock: RedisLock, policy: LockPolicy, hold: Duration) -> Self {
        Self {
            repo,
            lock,
            policy,
            hold,
        }
    }

    /// Releases in reverse order of taking. A release that fails (Redis gone) is logged, not
    /// returned: the booking's fate is already decided, and the key frees itself at its TTL.
    async fn release_all(&self, held: Vec<LockGuard>) {
        for guard in held.into_iter().rev() {
            let key = guard.key().to_owned();
            match self.lock.release(guard).await {
                Ok(Released::Released | Released::Expired | Released::Stolen) => {}
                Err(error) => {
                    tracing::warn!(%key, %error, "lock release failed; the key expires at its TTL")
                }
            }
        }
    }
}

#[async_trait]
impl Strategy for Locked {
    #[tracing::instrument(name = "locked", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        let mut held = Vec::with_capacity(request.stay.len() as usize);
        for night in request.stay.nights() {
            let key = self.lock.room_night_key(request.room, night);
            match self.lock.acquire(&key, &self.policy).await {
                Ok(Acquired::Held(guard)) => held.push(guard),
                Ok(Acquired::Busy { attempts }) => {
                    self.release_all(held).await;
                    return Ok(Outcome::LockNotAcquired { key, attempts });
                }
                Err(error) => {
                    // Fail closed: no lock, no booking.
                    self.release_all(held).await;
                    return Err(error.into());
                }
            }
        }
        // Released on every path — created, sold out, and error alike.
        let outcome = check_then_book(&self.repo, request, self.hold).await;
        self.release_all(held).await;
        outcome
    }

    fn stats(&self) -> StrategyStats {
        StrategyStats {
            lock: Some(self.lock.stats()),
            ..StrategyStats::default()
        }
    }
}
