//! `lost-update`: like naive, but writes the value it read: `SET booked_count = <read> + 1`.
//!
//! **The anomaly it shows** is the other classic one. Naive's `booked_count + 1` is computed by
//! the database at write time, so every increment lands (the counter matches the rows, both too
//! high). Here the new value is computed by the client from a stale read: twenty users read 0
//! and all write 1. The counter says one room is sold while twenty bookings exist — the
//! increments of nineteen users were lost. The verdict names both overbooking (twenty rows for
//! one room) and counter drift (rows ≠ `booked_count`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{BuildError, Context, Needs, Shows, Spec, Strategy, commit, slow_work};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::repo::{Availability, Repo};
use crate::steps;

/// `--mode lost-update`.
pub(super) const SPEC: Spec = Spec {
    name: "lost-update",
    summary: "Like naive, but writes the value it read (read + 1): loses updates",
    needs: Needs::Postgres,
    steps: &["check", "write", "commit"],
    shows: Shows::Overbooking,
    waits_with_lock_policy: false,
    slow_work: true,
    checks_stay: true,
    build,
};

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    Ok(Arc::new(LostUpdate::new(ctx.repo, ctx.tuning.hold)))
}

pub struct LostUpdate {
    repo: Repo,
    hold: Duration,
}

impl LostUpdate {
    pub fn new(repo: Repo, hold: Duration) -> Self {
        Self { repo, hold }
    }
}

#[async_trait]
impl Strategy for LostUpdate {
    #[tracing::instrument(name = "lost-update", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        let mut tx = self.repo.begin().await?;
        steps::step("check").await;
        let booked = match tx.availability(request.room, &request.stay).await? {
            Availability::SoldOut { night } => return commit(tx, Outcome::SoldOut { night }).await,
            Availability::Free { booked } => booked,
        };
        slow_work(self.hold).await;
        steps::step("write").await;
        for (night, read) in booked {
            // The bug on purpose: `read` may be long out of date by now.
            tx.set_booked(request.room, night, read + 1).await?;
        }
        let booking_id = tx.insert_booking(request).await?;
        commit(tx, Outcome::Created { booking_id }).await
    }
}
