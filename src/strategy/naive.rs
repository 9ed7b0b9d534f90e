//! `naive`: check, hold, write — in one READ COMMITTED transaction, with nothing else.
//!
//! **The race window** is the hold between [`availability`](crate::repo::BookingTx::availability)
//! and [`increment_booked`](crate::repo::BookingTx::increment_booked). The check is a plain read:
//! twenty transactions that start together all read `booked_count = 0` for the last room, all
//! decide it is free, and all increment it afterwards. Each increment is atomic, so
//! `booked_count` ends at 20 and equals the number of rows — the counter is not corrupted, the
//! *decision* was. Being inside a transaction does not help: READ COMMITTED takes no lock on
//! rows it only reads.

use std::time::Duration;

use async_trait::async_trait;

use super::Strategy;
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::repo::{Availability, Repo};

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

/// The unprotected transaction: check every night → hold → increment every night → insert.
/// Other strategies wrap it in whatever protects it.
pub(super) async fn check_then_book(
    repo: &Repo,
    request: &BookingRequest,
    hold: Duration,
) -> Result<Outcome, BookingError> {
    let mut tx = repo.begin().await?;
    if let Availability::SoldOut { night } = tx.availability(request.room, &request.stay).await? {
        tx.rollback().await?;
        tracing::info!(%night, "sold out");
        return Ok(Outcome::SoldOut { night });
    }
    // The slow work of a real booking (payment, fraud check, …): the race window.
    tokio::time::sleep(hold).await;
    tx.increment_booked(request.room, &request.stay).await?;
    let booking_id = tx.insert_booking(request).await?;
    tx.commit().await?;
    tracing::info!(booking_id, "booking created");
    Ok(Outcome::Created { booking_id })
}
