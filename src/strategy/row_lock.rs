//! `row-lock`: `SELECT … FOR UPDATE` on every night's inventory row before the check.
//!
//! **What it prevents:** the race itself. The row locks are taken before the check and held to
//! commit, so the second user's `FOR UPDATE` waits until the first commits and then reads the
//! new `booked_count`. Check and write become one critical section per room-night, enforced by
//! the database that owns the data — no second system to fail or to expire.
//!
//! **Why no deadlock:** one statement locks all the nights of a stay, `ORDER BY date`, so every
//! transaction takes the rows it shares with another in the same order.
//!
//! **What it costs:** a connection (and a transaction) is held while waiting; waiters queue
//! without polling, but the hold serialises every booking of the same room-night.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::naive::check_hold_write;
use super::{BuildError, Context, Needs, Shows, Spec, Strategy, commit};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::repo::Repo;
use crate::steps;

/// `--mode row-lock`.
pub(super) const SPEC: Spec = Spec {
    name: "row-lock",
    summary: "SELECT … FOR UPDATE on every night's row before the check",
    needs: Needs::Postgres,
    steps: &["lock-rows", "check", "write", "commit"],
    shows: Shows::Safe,
    waits_with_lock_policy: false,
    slow_work: true,
    checks_stay: true,
    build,
};

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    Ok(Arc::new(RowLock::new(ctx.repo, ctx.tuning.hold)))
}

pub struct RowLock {
    repo: Repo,
    hold: Duration,
}

impl RowLock {
    pub fn new(repo: Repo, hold: Duration) -> Self {
        Self { repo, hold }
    }
}

#[async_trait]
impl Strategy for RowLock {
    #[tracing::instrument(name = "row-lock", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        let mut tx = self.repo.begin().await?;
        steps::step("lock-rows").await;
        tx.lock_nights_for_update(request.room, &request.stay)
            .await?;
        let outcome = check_hold_write(&mut tx, request, self.hold).await?;
        commit(tx, outcome).await
    }
}
