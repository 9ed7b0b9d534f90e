//! `mutex`: an in-process `tokio::sync::Mutex` per room-night around the naive transaction.
//!
//! **What it prevents:** the race between users *of this process*. The mutexes are taken per
//! night in ascending date order (no deadlock, as for `locked`), and waiters queue on the mutex
//! instead of polling.
//!
//! **What it does not prevent:** the same race between processes. A second copy of the program
//! (another server behind the load balancer, `stress --processes 2`) has mutexes of its own, so
//! one user per process passes the check at the same time and the room is sold once per
//! process. That is why a lock that must hold across processes lives outside them — in Redis
//! (`locked`) or in the database (`row-lock`, `advisory`).
//!
//! A tokio mutex, not a std one: its guard is held across the `.await`s of the transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::naive::check_then_book;
use super::{BuildError, Context, Needs, Shows, Spec, Strategy};
use crate::domain::{BookingRequest, Outcome, RoomId};
use crate::error::BookingError;
use crate::repo::Repo;
use crate::steps;

/// One async mutex per room-night.
type Slots = HashMap<(RoomId, NaiveDate), Arc<Mutex<()>>>;

/// `--mode mutex`.
pub(super) const SPEC: Spec = Spec {
    name: "mutex",
    summary: "An in-process mutex per room-night: safe in one process, not across several",
    needs: Needs::Postgres,
    steps: &["lock", "check", "write", "commit", "unlock"],
    shows: Shows::SafeInOneProcess,
    waits_with_lock_policy: false,
    slow_work: true,
    checks_stay: false,
    build,
};

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    Ok(Arc::new(InProcessMutex::new(ctx.repo, ctx.tuning.hold)))
}

pub struct InProcessMutex {
    repo: Repo,
    hold: Duration,
    /// One mutex per room-night, created on first use. The map's own lock (std) is held only to
    /// look up or insert, never across an await.
    slots: StdMutex<Slots>,
}

impl InProcessMutex {
    pub fn new(repo: Repo, hold: Duration) -> Self {
        Self {
            repo,
            hold,
            slots: StdMutex::default(),
        }
    }

    fn slot(&self, room: RoomId, night: NaiveDate) -> Arc<Mutex<()>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry((room, night)).or_default())
    }
}

#[async_trait]
impl Strategy for InProcessMutex {
    #[tracing::instrument(name = "mutex", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        steps::step("lock").await;
        let mut held: Vec<OwnedMutexGuard<()>> = Vec::with_capacity(request.stay.len() as usize);
        for night in request.stay.nights() {
            held.push(lock_slot(self.slot(request.room, night), request.room, night).await);
        }
        let outcome = check_then_book(&self.repo, request, self.hold).await;
        steps::step("unlock").await;
        drop(held);
        outcome
    }
}

/// Waits for one room-night's mutex. Watched step by step (`interleave`), a busy mutex is
/// announced and tried again when the watcher says so; otherwise waiters queue on the mutex.
async fn lock_slot(slot: Arc<Mutex<()>>, room: RoomId, night: NaiveDate) -> OwnedMutexGuard<()> {
    loop {
        match Arc::clone(&slot).try_lock_owned() {
            Ok(guard) => return guard,
            Err(_) => {
                let announced =
                    steps::waiting(|| format!("the in-process mutex of room {room}, {night}"))
                        .await;
                if !announced {
                    return slot.lock_owned().await;
                }
            }
        }
    }
}
