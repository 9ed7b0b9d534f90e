//! `sharded`: the night's rooms split over several rows (`--shards`, `db reset --shards`), and a
//! booking that takes a room from any shard nobody holds right now.
//!
//! **What it is for:** a flash sale. Every other safe strategy books one room-night on one row,
//! so each booking of a hot night waits for the previous one's commit: the night books at the
//! rate one row can commit, however many cores the database has. With the rooms split over K
//! rows, up to K bookings of that night hold a row each and commit at once.
//!
//! **What it prevents:** the race, as `one-statement` does: one statement locks a shard with a
//! room left, increments it and inserts the booking ([`Repo::take_shard`], whose SQL's doc
//! argues why it cannot oversell and cannot deadlock). A shard someone holds is passed by
//! (`FOR UPDATE SKIP LOCKED`), so nobody queues while another shard has a room.
//!
//! **What it must not do: refuse while the night has a room.** Passing busy shards by finds
//! nothing both when the night is sold out and when every shard with a room is busy. So a
//! booking that found nothing asks again, this time waiting for the busy shards (step `wait`):
//! it is refused only when every shard is full. Without that second statement it would refuse
//! users while rooms are left — under-selling, which the verdict names.
//!
//! **What it costs:** K rows per night instead of one (the verdict, the reports and
//! `GET /api/availability` sum them: see [`Repo::slot_state`]), a sort of K rows per booking,
//! and a second statement on refusals. Like `one-statement`, no slow work between the check
//! and the write: for a payment, `reserve`.
//!
//! Steps, for `interleave`: `take` (the statement passing busy shards by), then, only when it
//! found none, `wait`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{BuildError, Context, Needs, Shows, Spec, Strategy, StrategyStats};
use crate::domain::{BookingRequest, Outcome};
use crate::error::{BookingError, InputError};
use crate::repo::{Repo, ShardTake, Take};
use crate::steps;

/// `--mode sharded`.
pub(super) const SPEC: Spec = Spec {
    name: "sharded",
    summary: "The night's rooms split over --shards rows: a booking takes a room from any shard nobody holds (SKIP LOCKED), and waits only when every shard with a room is busy",
    needs: Needs::Postgres,
    steps: &["take", "wait"],
    shows: Shows::Safe,
    waits_with_lock_policy: false,
    slow_work: false,
    checks_stay: true,
    build,
};

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    Ok(Arc::new(Sharded {
        repo: ctx.repo,
        waits: AtomicU64::new(0),
    }))
}

pub struct Sharded {
    repo: Repo,
    /// Bookings that found every shard with a room busy and waited for one.
    waits: AtomicU64,
}

impl Sharded {
    /// A night without shards is the caller's to fix, unless the room or night does not exist.
    async fn unsplit(
        &self,
        request: &BookingRequest,
        night: chrono::NaiveDate,
    ) -> Result<Outcome, BookingError> {
        self.repo
            .ensure_bookable(request.room, &request.stay)
            .await?;
        Err(InputError::Invalid(format!(
            "room {} has no inventory shards on {night}: --mode sharded books on shards, which \
             `booking-cli db reset --shards K` (and every stress run) creates",
            request.room
        ))
        .into())
    }
}

#[async_trait]
impl Strategy for Sharded {
    /// Its statements, prepared on every lane before the start (see
    /// [`Repo::warm_statements`]).
    async fn warm_up(&self, connections: u32) -> Result<(), BookingError> {
        Ok(self.repo.warm_statements(connections).await?)
    }

    fn stats(&self) -> StrategyStats {
        StrategyStats {
            shard_waits: Some(self.waits.load(Ordering::Relaxed)),
            ..StrategyStats::default()
        }
    }

    #[tracing::instrument(name = "sharded", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        steps::step("take").await;
        match self.repo.take_shard(request, Take::SkipBusy).await? {
            ShardTake::Booked { booking_id } => return Ok(Outcome::Created { booking_id }),
            ShardTake::NoShards { night } => return self.unsplit(request, night).await,
            ShardTake::Missed { .. } => {}
        }
        // Sold out, or every shard with a room is busy: the second statement tells them apart.
        self.waits.fetch_add(1, Ordering::Relaxed);
        steps::step("wait").await;
        match self.repo.take_shard(request, Take::Wait).await? {
            ShardTake::Booked { booking_id } => Ok(Outcome::Created { booking_id }),
            ShardTake::Missed { night } => Ok(Outcome::SoldOut { night }),
            ShardTake::NoShards { night } => self.unsplit(request, night).await,
        }
    }
}
