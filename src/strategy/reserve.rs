//! `reserve`: reserve, then confirm — how real booking systems take a payment without holding
//! a lock or a transaction through it.
//!
//! 1. **hold**: one statement places a hold — a booking with `status = 'held'` and an
//!    `expires_at` (`--hold-ttl-ms` ahead), counted in `booked_count` by the same statement,
//!    all nights or none (the statement of `one-statement`, so it cannot oversell). When the
//!    stay is full, holds that have expired are reclaimed first — their nights given back — and
//!    the hold is tried once more: a client that vanished mid-payment does not keep the room
//!    past its hold.
//! 2. **pay**: the slow work (`--hold-ms`), outside any lock or transaction. It fails with
//!    probability `--fail-rate` (a seeded RNG, `--fail-seed`).
//! 3. **confirm**: one statement confirms the hold, only if it has not expired. A failed
//!    payment cancels the hold instead, and an expired one is given back; both return the
//!    nights in the same statement.
//!
//! **What it prevents:** overbooking, as `one-statement` does — every hold is counted when it
//! is placed, so the nights on hold are not sold twice. And the slow work no longer holds
//! anything: a refused user is refused in milliseconds, not after the holder's payment.
//!
//! **What it changes:** a refusal while rooms are only *on hold* is not final — the holder's
//! payment may still fail and give the room back. Such a user gets its own outcome (503, rooms
//! on hold). With a wait deadline (`--lock-wait-ms`) it tries again until the deadline, so
//! rooms given back are sold; without one (and `--lock-retries` does not apply here) it is
//! refused at once, and rooms whose payment failed may end up unsold (the run reports it).
//! A confirmation after the hold's expiry would be an anomaly — the room may have been
//! reclaimed and sold — and the verdicts name it; the confirming statement refuses it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{BuildError, Context, Needs, Shows, Spec, Strategy, slow_work};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::lock::LockPolicy;
use crate::repo::{Claimed, HoldEnd, Repo};
use crate::steps;
use crate::stop::Stop;

/// `--mode reserve`.
pub(super) const SPEC: Spec = Spec {
    name: "reserve",
    summary: "Hold the room in one statement, pay outside any lock, then confirm (or give it back); expired holds are reclaimed",
    needs: Needs::Postgres,
    steps: &["hold", "pay", "confirm"],
    shows: Shows::Safe,
    waits_with_lock_policy: true,
    slow_work: true,
    checks_stay: true,
    build,
};

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    Ok(Arc::new(Reserve {
        repo: ctx.repo,
        work: ctx.tuning.hold,
        policy: ctx.tuning.lock_policy,
        hold_ttl: ctx.tuning.payments.hold_ttl,
        payments: Mutex::new(StdRng::seed_from_u64(ctx.tuning.payments.seed)),
        fail_rate: ctx.tuning.payments.fail_rate,
        stop: ctx.stop,
    }))
}

pub struct Reserve {
    repo: Repo,
    /// The slow work: the payment.
    work: Duration,
    /// `wait`: how long a user refused by holds keeps trying.
    policy: LockPolicy,
    /// How long a hold lives (`--hold-ttl-ms`).
    hold_ttl: Duration,
    /// Draws whether each payment fails; one sequence for all users, seeded.
    payments: Mutex<StdRng>,
    fail_rate: f64,
    stop: Stop,
}

/// Where placing a hold ended.
enum Placed {
    Hold(i64),
    Refused(Outcome),
}

impl Reserve {
    fn payment_fails(&self) -> bool {
        if self.fail_rate <= 0.0 {
            return false;
        }
        let mut rng = self.payments.lock().unwrap_or_else(PoisonError::into_inner);
        rng.random_bool(self.fail_rate.min(1.0))
    }

    /// Places the hold; reclaims expired holds when the stay is full; with a deadline, keeps
    /// trying while the rooms left are only on hold.
    async fn place(&self, request: &BookingRequest) -> Result<Placed, BookingError> {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let night = match self.repo.book_stay(request, Some(self.hold_ttl)).await? {
                Claimed::Booked { booking_id } => return Ok(Placed::Hold(booking_id)),
                Claimed::Full { night } => night,
            };
            let (reclaimed, live_holds, nights) = self
                .repo
                .reclaim_holds(request.room, &request.stay, night)
                .await?;
            if nights < i64::from(request.stay.len()) {
                // Not full: a night without inventory, which is the error.
                self.repo
                    .ensure_bookable(request.room, &request.stay)
                    .await?;
            }
            if reclaimed > 0 {
                tracing::info!(%night, reclaimed, "expired holds reclaimed");
                if let Claimed::Booked { booking_id } =
                    self.repo.book_stay(request, Some(self.hold_ttl)).await?
                {
                    return Ok(Placed::Hold(booking_id));
                }
            }
            if live_holds == 0 {
                return Ok(Placed::Refused(Outcome::SoldOut { night }));
            }
            // Only holds stand in the way, and they may still fail: with a deadline, wait.
            let Some(wait) = self.policy.wait else {
                return Ok(Placed::Refused(Outcome::OnHold { night }));
            };
            let waited = started.elapsed();
            if waited >= wait {
                return Ok(Placed::Refused(Outcome::OnHold { night }));
            }
            // Watched step by step (`interleave`): the watcher says when to try again.
            if steps::waiting(|| format!("the holds on room {}, {night}", request.room)).await {
                continue;
            }
            let pause = self
                .policy
                .backoff()
                .pause(attempt)
                .min(wait.saturating_sub(waited));
            if self.stop.sleep(pause).await {
                return Ok(Placed::Refused(Outcome::Interrupted));
            }
        }
    }
}

#[async_trait]
impl Strategy for Reserve {
    /// As many users at once as there are: the payment holds no connection, so users are not
    /// limited to one per pooled connection — the statements take one for a moment each.
    fn lanes(&self, _pooled: u32) -> u32 {
        u32::MAX
    }

    /// Its statements, prepared on every lane before the start (see
    /// [`Repo::warm_statements`]).
    async fn warm_up(&self, connections: u32) -> Result<(), BookingError> {
        Ok(self.repo.warm_statements(connections).await?)
    }

    #[tracing::instrument(name = "reserve", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        steps::step("hold").await;
        let hold = match self.place(request).await? {
            Placed::Hold(id) => id,
            Placed::Refused(outcome) => return Ok(outcome),
        };
        steps::step("pay").await;
        // The slow work holds nothing: no lock, no transaction, no connection.
        slow_work(self.work).await;
        let failed = self.payment_fails();
        steps::step("confirm").await;
        if failed {
            self.repo.release_hold(hold, HoldEnd::Cancelled).await?;
            tracing::info!(hold, "payment failed; hold cancelled");
            return Ok(Outcome::PaymentFailed);
        }
        if self.repo.confirm_hold(hold).await? {
            tracing::info!(booking_id = hold, "booking created");
            return Ok(Outcome::Created { booking_id: hold });
        }
        // Expired before the confirmation: give it back unless a reclaimer already did.
        self.repo.release_hold(hold, HoldEnd::Expired).await?;
        tracing::warn!(hold, "hold expired before its confirmation");
        Ok(Outcome::HoldExpired)
    }
}
