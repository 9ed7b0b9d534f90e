//! `advisory`: a PostgreSQL advisory lock per room-night (`pg_advisory_xact_lock`), taken in
//! the transaction *before* the check, in ascending date order.
//!
//! **What it prevents:** the race, like `locked`, but with the lock kept by the database that
//! holds the data: no TTL to expire, released automatically at commit, rollback or a dropped
//! connection. Taken before the check — a lock taken after it (or around the write only) would
//! protect nothing, because the decision would already rest on a stale read.
//!
//! **What it does not do:** advisory locks are cooperative. Any code path that books without
//! taking them is unprotected; `row-lock` and `atomic` protect every writer.
//!
//! **Why no deadlock:** nights are locked in ascending date order (see `locked`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::naive::check_hold_write;
use super::{BuildError, Context, Needs, Shows, Spec, Strategy, commit};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::repo::Repo;
use crate::steps;

/// `--mode advisory`.
pub(super) const SPEC: Spec = Spec {
    name: "advisory",
    summary: "pg_advisory_xact_lock per room-night before the check",
    needs: Needs::Postgres,
    steps: &["lock", "check", "write", "commit"],
    shows: Shows::Safe,
    waits_with_lock_policy: false,
    slow_work: true,
    checks_stay: true,
    build,
};

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    Ok(Arc::new(Advisory::new(ctx.repo, ctx.tuning.hold)))
}

pub struct Advisory {
    repo: Repo,
    hold: Duration,
}

impl Advisory {
    pub fn new(repo: Repo, hold: Duration) -> Self {
        Self { repo, hold }
    }
}

#[async_trait]
impl Strategy for Advisory {
    #[tracing::instrument(name = "advisory", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        let mut tx = self.repo.begin().await?;
        steps::step("lock").await;
        for night in request.stay.nights() {
            tx.advisory_lock_night(request.room, night).await?;
        }
        let outcome = check_hold_write(&mut tx, request, self.hold).await?;
        commit(tx, outcome).await
    }
}
