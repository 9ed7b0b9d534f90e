//! `fenced`: the Redis lock of `locked`, plus a fencing token that the database checks.
//!
//! **The failure it survives:** a holder whose lock expires while it is still working (a long
//! pause, a TTL shorter than the work). With `locked`, a second holder then gets in, both pass
//! the check, and the night is sold twice — the well-known critique of lease-based locks.
//!
//! **How:** taking a lock also draws a token from a counter in Redis (one script, so every
//! holder's token is larger than every earlier holder's). Before its check, the holder
//! *claims* each night in PostgreSQL (`fence_token = GREATEST(fence_token, token)`, its own
//! statement). Its write then increments only `WHERE fence_token = token`: if a newer holder
//! has claimed the night since, the write matches nothing, the transaction rolls back, and the
//! user gets `409 Conflict (stale lock token)`.
//!
//! **It is the token that saves the run:** the transaction is exactly `locked`'s check → hold →
//! write → insert; the only difference is the token in the write's `WHERE`. The claim is not
//! a lock (it commits at once), so nothing else serialises the holders.

use std::time::Duration;

use async_trait::async_trait;

use super::{Strategy, StrategyStats, commit};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::lock::{AcquiredAll, LockGuard, LockPolicy, RedisLock};
use crate::repo::{Availability, Repo};

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

    /// Claim every night, then check → hold → fenced write → insert.
    async fn book_fenced(
        &self,
        request: &BookingRequest,
        held: &[LockGuard],
    ) -> Result<Outcome, BookingError> {
        let tokens: Vec<_> = request
            .stay
            .nights()
            .zip(held)
            .map(|(night, guard)| {
                (
                    night,
                    i64::try_from(guard.fence().unwrap_or(0)).unwrap_or(i64::MAX),
                )
            })
            .collect();
        for (night, token) in &tokens {
            self.repo.claim_fence(request.room, *night, *token).await?;
        }
        let mut tx = self.repo.begin().await?;
        if let Availability::SoldOut { night } =
            tx.availability(request.room, &request.stay).await?
        {
            return commit(tx, Outcome::SoldOut { night }).await;
        }
        tokio::time::sleep(self.hold).await;
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

#[async_trait]
impl Strategy for Fenced {
    #[tracing::instrument(name = "fenced", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        let keys = request
            .stay
            .nights()
            .map(|night| self.lock.room_night(request.room, night, true))
            .collect();
        let held = match self.lock.acquire_all(keys, &self.policy).await? {
            AcquiredAll::Held(held) => held,
            AcquiredAll::Busy { key, attempts } => {
                return Ok(Outcome::LockNotAcquired { key, attempts });
            }
            AcquiredAll::Interrupted => return Ok(Outcome::Interrupted),
        };
        let outcome = self.book_fenced(request, &held).await;
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
