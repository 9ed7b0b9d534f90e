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
//! **When the transaction may start:** only on locks that are all still valid at that instant
//! (`RedisLock::acquire_all` hands over no other set), so a user who held night 1 while night 2
//! stayed busy past night 1's TTL never books on the expired lock.
//!
//! **What it does not prevent:** a holder still working when its TTL ends. Then a second holder
//! gets in and the slot can be overbooked; release reports it ([`Released::Expired`] or
//! [`Released::Stolen`]). Keep `--lock-ttl-ms` well above `--hold-ms`, renew (`--lock-renew`),
//! or fence (`fenced`).
//!
//! [`Released::Expired`]: crate::lock::Released::Expired
//! [`Released::Stolen`]: crate::lock::Released::Stolen
//!
//! **What it costs:** a round trip to Redis before and after the transaction, and waiting.
//! A release wakes the next waiter (`lock::wake`), but with a fixed retry budget
//! (`--lock-retries`) users still give up when the holds ahead of them outlast it, so at
//! inventory > 1 some are refused for the lock although rooms are left: under-selling. A deadline (`--lock-wait-ms`) with jittered exponential
//! backoff keeps them trying as long as the deadline allows.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::naive::{check_hold_write, check_then_book};
use super::{BuildError, Context, Needs, Shows, Spec, Strategy, StrategyStats, commit};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::lock::{AcquiredAll, LockGuard, LockPolicy, RedisLock};
use crate::repo::Repo;
use crate::steps;

/// `--mode locked`.
pub(super) const SPEC: Spec = Spec {
    name: "locked",
    summary: "The naive transaction inside a Redis lock on every night of the stay",
    needs: Needs::Redis,
    steps: &["lock", "check", "write", "commit", "unlock"],
    shows: Shows::Safe,
    waits_with_lock_policy: true,
    slow_work: true,
    checks_stay: false,
    build,
};

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    let lock = ctx.lock.ok_or(BuildError::NeedsRedis(SPEC.name))?;
    Ok(Arc::new(Locked::new(
        ctx.repo,
        lock,
        ctx.tuning.lock_policy,
        ctx.tuning.hold,
    )))
}

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

    /// The naive transaction while `held` is renewed every ttl/3. Renewal races the check, the
    /// hold and the write: if a lock cannot be renewed, that work is dropped — its transaction
    /// rolls back — because it would no longer be protected. The commit is not raced: once it
    /// is on its way, PostgreSQL decides, and the outcome reported is the one it recorded (a
    /// renewal failing then changes nothing the lock still had to protect).
    async fn book_renewing(
        &self,
        request: &BookingRequest,
        held: &[LockGuard],
    ) -> Result<Outcome, BookingError> {
        let mut tx = self.repo.begin().await?;
        let decided = tokio::select! {
            decided = check_hold_write(&mut tx, request, self.hold) => decided?,
            lost = self.lock.keep_alive(held, self.policy.ttl) => {
                tracing::warn!(%lost, "aborting the booking");
                // Dropping the transaction rolls it back.
                return Err(BookingError::LockLost(lost));
            }
        };
        commit(tx, decided).await
    }
}

#[async_trait]
impl Strategy for Locked {
    #[tracing::instrument(name = "locked", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        let keys = request
            .stay
            .nights()
            .map(|night| self.lock.room_night(request.room, night, false))
            .collect();
        steps::step("lock").await;
        // On Err — Redis unreachable — no lock is held and no booking is made: fail closed.
        let held = match self.lock.acquire_all(keys, &self.policy).await? {
            AcquiredAll::Held(held) => held,
            AcquiredAll::Busy { key, attempts } => {
                return Ok(Outcome::LockNotAcquired { key, attempts });
            }
            AcquiredAll::Interrupted => return Ok(Outcome::Interrupted),
        };
        // Released on every path — created, sold out, and error alike.
        let outcome = if self.policy.renew {
            self.book_renewing(request, &held).await
        } else {
            check_then_book(&self.repo, request, self.hold).await
        };
        steps::step("unlock").await;
        self.lock.release_all(held).await;
        outcome
    }

    fn stats(&self) -> StrategyStats {
        StrategyStats {
            lock: Some(self.lock.stats()),
            ..StrategyStats::default()
        }
    }
}
