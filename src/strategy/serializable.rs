//! `serializable`: the naive transaction at SERIALIZABLE isolation, retried whole on
//! serialization failure (`40001`) or deadlock (`40P01`).
//!
//! **What it prevents:** every anomaly a serial order would not have. PostgreSQL's SSI notices
//! that two transactions read the same `booked_count` and then both wrote it, and aborts all but
//! one at the write or at commit. Nothing is locked up front: the losers do their whole hold
//! first and find out at the end.
//!
//! **What it costs:** wasted work and retries. Each retry starts from scratch, after a pause
//! with exponential backoff and full jitter (so that the losers do not collide again in
//! lock-step). The budget is bounded: a user whose every attempt is aborted gives up with
//! `409 Conflict (retries exhausted)`, counted separately, and the retries are counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::naive::check_hold_write;
use super::{
    BuildError, Context, Needs, RetryPolicy, Shows, Spec, Strategy, StrategyStats, commit,
};
use crate::domain::{BookingRequest, Outcome};
use crate::error::BookingError;
use crate::repo::Repo;
use crate::steps;
use crate::stop::Stop;

/// `--mode serializable`.
pub(super) const SPEC: Spec = Spec {
    name: "serializable",
    summary: "The naive transaction at SERIALIZABLE, retried on serialization failure and deadlock",
    needs: Needs::Postgres,
    steps: &["check", "write", "commit"],
    shows: Shows::Safe,
    waits_with_lock_policy: false,
    slow_work: true,
    checks_stay: true,
    build,
};

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    Ok(Arc::new(Serializable::new(
        ctx.repo,
        ctx.tuning.hold,
        ctx.tuning.retry,
        ctx.stop,
    )))
}

pub struct Serializable {
    repo: Repo,
    hold: Duration,
    policy: RetryPolicy,
    /// Transactions aborted by PostgreSQL and run again, over all users.
    retries: AtomicU64,
    stop: Stop,
}

impl Serializable {
    pub fn new(repo: Repo, hold: Duration, policy: RetryPolicy, stop: Stop) -> Self {
        Self {
            repo,
            hold,
            policy,
            retries: AtomicU64::new(0),
            stop,
        }
    }

    async fn attempt(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        let mut tx = self.repo.begin().await?;
        tx.set_serializable().await?;
        let outcome = check_hold_write(&mut tx, request, self.hold).await?;
        // SSI may also abort at commit: that error is retried like any other 40001.
        commit(tx, outcome).await
    }
}

#[async_trait]
impl Strategy for Serializable {
    #[tracing::instrument(name = "serializable", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        let attempts = self.policy.retries.saturating_add(1);
        for attempt in 1..=attempts {
            match self.attempt(request).await {
                Err(error) if error.is_retryable() => {
                    if attempt == attempts {
                        break;
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    steps::aborted(|| error.server_message().unwrap_or_else(|| error.to_string()));
                    let pause = self.policy.backoff.pause(attempt);
                    tracing::info!(attempt, ?pause, %error, "transaction aborted, retrying");
                    if self.stop.sleep(pause).await {
                        return Ok(Outcome::Interrupted);
                    }
                }
                other => return other,
            }
        }
        tracing::info!(attempts, "transaction aborted on every attempt, giving up");
        Ok(Outcome::RetriesExhausted { attempts })
    }

    fn stats(&self) -> StrategyStats {
        StrategyStats {
            tx_retries: Some(self.retries.load(Ordering::Relaxed)),
            ..StrategyStats::default()
        }
    }
}
