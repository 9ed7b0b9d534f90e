//! `fenced`: the Redis lock of `locked`, plus a fencing token that the database checks.
//!
//! **The failure it survives:** a holder whose lock expires while it is still working (a long
//! pause, a TTL shorter than the work). With `locked`, a second holder then gets in, both pass
//! the check, and the night is sold twice — the well-known critique of lease-based locks.
//!
//! **How:** taking a lock also draws a token from a counter in Redis (one script, so every
//! holder's token is larger than every earlier holder's). Before its check, the holder
//! *claims* each night in PostgreSQL (`fence_token = token WHERE fence_token < token`, its own
//! statement). Its write then increments only `WHERE fence_token = token`: if a newer holder
//! has claimed the night since, the write matches nothing, the transaction rolls back, and the
//! user gets `409 Conflict (stale lock token)`.
//!
//! **When Redis loses the counter** (a restart without persistence, the key deleted), it hands
//! out small tokens again, at or below what PostgreSQL has already accepted. Such a claim is
//! refused (only a strictly newer token is claimed, so two holders can never share one), and
//! the holder learns the newest token the night has seen. Then it raises the counter above
//! that and draws a fresh token — in one script that first checks it still holds the lock
//! (`RedisLock::raise_fence`) — and claims again. Why this is safe:
//! - only the current holder of the Redis lock can raise the counter, so the raise cannot be
//!   used by a holder whose lock expired: that one stays fenced out;
//! - the raised token is larger than every token PostgreSQL accepted for the night, so a
//!   holder whose token predates the loss is older than it — its claim or its write is
//!   refused, exactly as before the loss;
//! - the counter only grows from there, so every later holder's token is larger again.
//!
//! Without this, the first holder after the loss would draw a token below the stored one,
//! never match its write, and the night would refuse every booking until the counter caught
//! up by itself.
//!

//!
//! **It is the token that saves the run:** the transaction is exactly `locked`'s check → hold →
//! write → insert; the only difference is the token in the write's `WHERE`. The claim is not
//! a lock (it commits at once), so nothing else serialises the holders.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;

use super::{BuildError, Context, Needs, Shows, Spec, Strategy, StrategyStats, commit, slow_work};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::lock::{AcquiredAll, LockGuard, LockPolicy, RedisLock};
use crate::repo::{Availability, Claim, Repo};
use crate::steps;

/// `--mode fenced`.
pub(super) const SPEC: Spec = Spec {
    name: "fenced",
    summary: "The Redis lock plus a fencing token checked by the database: survives expired locks",
    needs: Needs::Redis,
    steps: &["lock", "claim", "check", "write", "commit", "unlock"],
    shows: Shows::Safe,
    waits_with_lock_policy: true,
    slow_work: true,
    checks_stay: false,
    build,
};

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    let lock = ctx.lock.ok_or(BuildError::NeedsRedis(SPEC.name))?;
    Ok(Arc::new(Fenced::new(
        ctx.repo,
        lock,
        ctx.tuning.lock_policy,
        ctx.tuning.hold,
    )))
}

pub struct Fenced {
    repo: Repo,
    lock: RedisLock,
    policy: LockPolicy,
    hold: Duration,
}

impl Fenced {
    pub fn new(repo: Repo, lock: RedisLock, policy: LockPolicy, hold: Duration) -> Self {
        Self {
            repo,
            lock,
            policy,
            hold,
        }
    }

    /// Claims `night` for the holder of `guard`: its token, or `None` when a newer holder has
    /// the night. A token PostgreSQL has already seen is raised past it first (see the module
    /// docs: Redis lost its counter).
    async fn claim(
        &self,
        request: &BookingRequest,
        night: NaiveDate,
        guard: &LockGuard,
    ) -> Result<Option<i64>, BookingError> {
        let token = as_token(guard.fence().unwrap_or(0));
        let Claim::Behind { stored } = self.repo.claim_fence(request.room, night, token).await?
        else {
            return Ok(Some(token));
        };
        let floor = u64::try_from(stored).unwrap_or(0);
        let Some(raised) = self.lock.raise_fence(guard, floor).await? else {
            // The lock is no longer ours: a newer holder has (or had) the night.
            tracing::warn!(%night, token, stored, "claim refused: a newer lock holder claimed the night");
            return Ok(None);
        };
        let raised = as_token(raised);
        tracing::warn!(%night, token, stored, raised, "fencing counter was behind PostgreSQL (Redis lost it): raised");
        match self.repo.claim_fence(request.room, night, raised).await? {
            Claim::Claimed => Ok(Some(raised)),
            Claim::Behind { .. } => Ok(None),
        }
    }

    /// Claim every night, then check → hold → fenced write → insert.
    async fn book_fenced(
        &self,
        request: &BookingRequest,
        held: &[LockGuard],
    ) -> Result<Outcome, BookingError> {
        let mut tokens = Vec::with_capacity(held.len());
        steps::step("claim").await;
        for (night, guard) in request.stay.nights().zip(held) {
            match self.claim(request, night, guard).await? {
                Some(token) => tokens.push((night, token)),
                None => return Ok(Outcome::FencedOut { night }),
            }
        }
        let mut tx = self.repo.begin().await?;
        steps::step("check").await;
        if let Availability::SoldOut { night } =
            tx.availability(request.room, &request.stay).await?
        {
            return commit(tx, Outcome::SoldOut { night }).await;
        }
        slow_work(self.hold).await;
        steps::step("write").await;
        for (night, token) in tokens {
            if !tx.increment_if_fenced(request.room, night, token).await? {
                tx.rollback().await?;
                tracing::warn!(%night, token, "stale write rejected: a newer lock holder claimed the night");
                return Ok(Outcome::FencedOut { night });
            }
        }
        let booking_id = tx.insert_booking(request).await?;
        commit(tx, Outcome::Created { booking_id }).await
    }
}

/// A fencing token as PostgreSQL stores it (BIGINT).
fn as_token(fence: u64) -> i64 {
    i64::try_from(fence).unwrap_or(i64::MAX)
}

#[async_trait]
impl Strategy for Fenced {
    #[tracing::instrument(name = "fenced", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        let keys = request
            .stay
            .nights()
            .map(|night| self.lock.room_night(request.room, night, true))
            .collect();
        steps::step("lock").await;
        let held = match self.lock.acquire_all(keys, &self.policy).await? {
            AcquiredAll::Held(held) => held,
            AcquiredAll::Busy { key, attempts } => {
                return Ok(Outcome::LockNotAcquired { key, attempts });
            }
            AcquiredAll::Interrupted => return Ok(Outcome::Interrupted),
        };
        let outcome = self.book_fenced(request, &held).await;
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
