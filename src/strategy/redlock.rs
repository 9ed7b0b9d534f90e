//! `redlock`: the naive transaction inside a Redlock per room-night, over several Redis
//! instances (`--redis-url` repeated, or a comma list).
//!
//! **What it adds over `locked`:** availability. The lock is held when a majority of the
//! instances granted it within its validity time, so one of three may die and bookings go on.
//! With a majority down, no lock can be taken and no booking is made: it fails closed.
//!
//! **What it does not add:** safety under pauses. A holder that outlives its validity is in the
//! same position as a `locked` holder whose TTL ran out; see `lock::redlock` for why a fencing
//! token (`fenced`) is still needed for that.

use std::time::Duration;

use async_trait::async_trait;

use super::naive::check_then_book;
use super::{Strategy, StrategyStats};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::lock::LockPolicy;
use crate::lock::redlock::{RedAcquired, RedLock};
use crate::repo::Repo;

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
        // No quorum is an error: no lock, no booking.
        let held = match self.lock.acquire_all(keys, &self.policy).await? {
            RedAcquired::Held(held) => held,
            RedAcquired::Busy { key, attempts } => {
                return Ok(Outcome::LockNotAcquired { key, attempts });
            }
            RedAcquired::Interrupted => return Ok(Outcome::Interrupted),
        };
        let outcome = check_then_book(&self.repo, request, self.hold).await;
        if held
            .iter()
            .any(|g| std::time::Instant::now() > g.valid_until)
        {
            tracing::warn!("redlock validity ran out before the booking finished");
        }
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
