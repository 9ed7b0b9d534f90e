//! `atomic`: no explicit lock — the check *is* the write. One conditional
//! `UPDATE … SET booked_count = booked_count + 1 WHERE … AND booked_count < total_inventory` per
//! night, all nights or none, then the insert.
//!
//! **What it prevents:** the race, with the fewest statements. The condition is evaluated by
//! PostgreSQL on the row it is about to update; a concurrent updater of the same row makes it
//! wait and then re-check the condition against the committed value (READ COMMITTED's
//! re-evaluation of updated rows). A night that comes back with zero rows affected was full:
//! the transaction rolls back and gives the nights it took back.
//!
//! **Hold:** after the updates, before the insert — inside the critical section, because the
//! updated rows stay locked until commit.
//!
//! **Why no deadlock:** nights are updated one by one in ascending date order.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{BuildError, Context, Needs, Shows, Spec, Strategy, commit, slow_work};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::repo::Repo;
use crate::steps;

/// `--mode atomic`.
pub(super) const SPEC: Spec = Spec {
    name: "atomic",
    summary: "One conditional UPDATE per night (booked_count < total_inventory), then the insert",
    needs: Needs::Postgres,
    steps: &["update", "insert", "commit"],
    shows: Shows::Safe,
    waits_with_lock_policy: false,
    slow_work: true,
    checks_stay: false,
    build,
};

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    Ok(Arc::new(Atomic::new(ctx.repo, ctx.tuning.hold)))
}

pub struct Atomic {
    repo: Repo,
    hold: Duration,
}

impl Atomic {
    pub fn new(repo: Repo, hold: Duration) -> Self {
        Self { repo, hold }
    }
}

#[async_trait]
impl Strategy for Atomic {
    #[tracing::instrument(name = "atomic", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        let mut tx = self.repo.begin().await?;
        steps::step("update").await;
        for night in request.stay.nights() {
            if !tx.increment_if_free(request.room, night).await? {
                // Dropping the transaction would roll back too; saying it is clearer.
                tx.rollback().await?;
                tracing::info!(%night, "sold out");
                return Ok(Outcome::SoldOut { night });
            }
        }
        slow_work(self.hold).await;
        steps::step("insert").await;
        let booking_id = tx.insert_booking(request).await?;
        commit(tx, Outcome::Created { booking_id }).await
    }
}
