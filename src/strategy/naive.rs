//! `naive`: check, hold, write — in one READ COMMITTED transaction, with nothing else.
//!
//! **The race window** is the hold between [`availability`](crate::repo::BookingTx::availability)
//! and [`increment_booked`](crate::repo::BookingTx::increment_booked). The check is a plain read:
//! twenty transactions that start together all read `booked_count = 0` for the last room, all
//! decide it is free, and all increment it afterwards. Each increment is atomic, so
//! `booked_count` ends at 20 and equals the number of rows — the counter is not corrupted, the
//! *decision* was. Being inside a transaction does not help: READ COMMITTED takes no lock on
//! rows it only reads.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{BuildError, Context, Needs, Shows, Spec, Strategy, commit, slow_work};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::repo::{Availability, BookingTx, Repo};
use crate::steps;

/// `--mode naive`.
pub(super) const SPEC: Spec = Spec {
    name: "naive",
    summary: "Check, then write, with nothing in between: overbooks under concurrency",
    needs: Needs::Postgres,
    steps: &["check", "write", "commit"],
    shows: Shows::Overbooking,
    waits_with_lock_policy: false,
    slow_work: true,
    checks_stay: true,
    build,
};

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    Ok(Arc::new(Naive::new(ctx.repo, ctx.tuning.hold)))
}

pub struct Naive {
    repo: Repo,
    hold: Duration,
}

impl Naive {
    pub fn new(repo: Repo, hold: Duration) -> Self {
        Self { repo, hold }
    }
}

#[async_trait]
impl Strategy for Naive {
    #[tracing::instrument(name = "naive", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        check_then_book(&self.repo, request, self.hold).await
    }
}

/// The unprotected transaction: begin → [`check_hold_write`] → commit. The `locked` strategy
/// runs exactly this inside its Redis locks.
pub(super) async fn check_then_book(
    repo: &Repo,
    request: &BookingRequest,
    hold: Duration,
) -> Result<Outcome, BookingError> {
    let mut tx = repo.begin().await?;
    let outcome = check_hold_write(&mut tx, request, hold).await?;
    commit(tx, outcome).await
}

/// The steps every check-then-write strategy shares, inside a transaction someone else opened
/// (and protected, or not): check every night → hold → increment every night → insert.
pub(super) async fn check_hold_write(
    tx: &mut BookingTx,
    request: &BookingRequest,
    hold: Duration,
) -> Result<Outcome, BookingError> {
    steps::step("check").await;
    if let Availability::SoldOut { night } = tx.availability(request.room, &request.stay).await? {
        return Ok(Outcome::SoldOut { night });
    }
    // The slow work of a real booking (payment, fraud check, …): the race window.
    slow_work(hold).await;
    steps::step("write").await;
    tx.increment_booked(request.room, &request.stay).await?;
    let booking_id = tx.insert_booking(request).await?;
    Ok(Outcome::Created { booking_id })
}
