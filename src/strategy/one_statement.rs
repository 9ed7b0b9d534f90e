//! `one-statement`: the whole booking in one round trip — one prepared statement that locks
//! every night of the stay, checks them, increments them all or none, and inserts the booking
//! ([`BOOK_STAY`](crate::repo::Repo::book_stay), whose doc comment argues why it cannot
//! oversell under READ COMMITTED).
//!
//! **What it prevents:** the race, as `row-lock` does — the check and the write are one
//! critical section per night — but with one statement instead of five, so a contested night
//! is held for the time the server needs to run it, not for the client's round trips.
//!
//! **What it cannot do:** slow work between the check and the write. There is no "between":
//! `--hold-ms` is not applied (the run says so). For a booking that must take a payment, hold
//! the room with one statement and confirm it with another: `reserve`.
//!
//! Its one step, for `interleave`, is the statement itself.

use std::sync::Arc;

use async_trait::async_trait;

use super::{BuildError, Context, Needs, Shows, Spec, Strategy};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::repo::{Claimed, Repo};
use crate::steps;

/// `--mode one-statement`.
pub(super) const SPEC: Spec = Spec {
    name: "one-statement",
    summary: "The whole booking in one round trip: one statement locks, checks and writes every night, all or none",
    needs: Needs::Postgres,
    steps: &["book"],
    shows: Shows::Safe,
    waits_with_lock_policy: false,
    slow_work: false,
    checks_stay: true,
    build,
};

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    Ok(Arc::new(OneStatement { repo: ctx.repo }))
}

pub struct OneStatement {
    repo: Repo,
}

#[async_trait]
impl Strategy for OneStatement {
    /// Its statements, prepared on every lane before the start (see
    /// [`Repo::warm_statements`]).
    async fn warm_up(&self, connections: u32) -> Result<(), BookingError> {
        Ok(self.repo.warm_statements(connections).await?)
    }

    #[tracing::instrument(name = "one-statement", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        steps::step("book").await;
        Ok(match self.repo.book_stay(request, None).await? {
            Claimed::Booked { booking_id } => Outcome::Created { booking_id },
            Claimed::Full { night } => {
                // Full — unless a night has no inventory row, which is the error.
                self.repo
                    .ensure_bookable(request.room, &request.stay)
                    .await?;
                Outcome::SoldOut { night }
            }
        })
    }
}
