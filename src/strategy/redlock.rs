//! `redlock`: the naive transaction inside a Redlock per room-night, over several Redis
//! instances (`--redis-url` repeated, or a comma list).
//!
//! **What it adds over `locked`:** availability. The lock is held when a majority of the
//! instances granted it within its validity time, so one of three may die and bookings go on.
//! With a majority down, no lock can be taken and no booking is made: it fails closed.
//!
//! **Validity, enforced:** the transaction starts only on locks that are all valid, and commits
//! only if they still are — Redlock's guarantee lasts for the validity time (TTL minus the time
//! spent acquiring minus the drift allowance), so a booking that ran past it is rolled back and
//! refused ([`Outcome::LockExpired`]) rather than committed on a lock that a majority may have
//! handed to someone else meanwhile.
//!
//! **What it does not add:** safety under pauses. A holder that outlives its validity is in the
//! same position as a `locked` holder whose TTL ran out; see `lock::redlock` for why a fencing
//! token (`fenced`) is still needed for that.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::naive::check_hold_write;
use super::{BuildError, Context, Needs, Shows, Spec, Strategy, StrategyStats, commit};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::lock::LockPolicy;
use crate::lock::redlock::{RedAcquired, RedGuard, RedLock};
use crate::repo::Repo;
use crate::steps;

/// `--mode redlock`.
pub(super) const SPEC: Spec = Spec {
    name: "redlock",
    summary: "A Redlock over several Redis instances (--redis-url repeated): held on a majority",
    needs: Needs::Redlock,
    steps: &["lock", "check", "write", "commit", "unlock"],
    shows: Shows::Safe,
    waits_with_lock_policy: true,
    slow_work: true,
    checks_stay: false,
    build,
};

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    let lock = ctx.redlock.ok_or(BuildError::NeedsRedis(SPEC.name))?;
    Ok(Arc::new(Redlock::new(
        ctx.repo,
        lock,
        ctx.tuning.lock_policy,
        ctx.tuning.hold,
    )))
}

pub struct Redlock {
    repo: Repo,
    lock: RedLock,
    policy: LockPolicy,
    hold: Duration,
}

impl Redlock {
    pub fn new(repo: Repo, lock: RedLock, policy: LockPolicy, hold: Duration) -> Self {
        Self {
            repo,
            lock,
            policy,
            hold,
        }
    }

    /// The naive transaction, committed only while every lock of `held` is still valid.
    async fn book_while_valid(
        &self,
        request: &BookingRequest,
        held: &[RedGuard],
    ) -> Result<Outcome, BookingError> {
        let mut tx = self.repo.begin().await?;
        let decided = check_hold_write(&mut tx, request, self.hold).await?;
        if matches!(decided, Outcome::Created { .. })
            && let Some(expired) = held.iter().find(|guard| !guard.is_valid())
        {
            tracing::warn!(
                key = expired.key(),
                "redlock validity ran out before commit; rolling back"
            );
            tx.rollback().await?;
            return Ok(Outcome::LockExpired {
                key: expired.key().to_owned(),
            });
        }
        commit(tx, decided).await
    }
}

#[async_trait]
impl Strategy for Redlock {
    #[tracing::instrument(name = "redlock", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        let keys = request
            .stay
            .nights()
            .map(|night| self.lock.room_night_key(request.room, night))
            .collect();
        steps::step("lock").await;
        // No quorum is an error: no lock, no booking.
        let held = match self.lock.acquire_all(keys, &self.policy).await? {
            RedAcquired::Held(held) => held,
            RedAcquired::Busy { key, attempts } => {
                return Ok(Outcome::LockNotAcquired { key, attempts });
            }
            RedAcquired::Interrupted => return Ok(Outcome::Interrupted),
        };
        let outcome = self.book_while_valid(request, &held).await;
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
