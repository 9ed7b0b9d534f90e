//! booking-cli's own strategies as a target: each user's booking runs the strategy's code in
//! this process, one lane per pooled database connection.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::BookingError;
use crate::repo::Repo;
use indicatif::ProgressBar;

use crate::run::{Attempt, StressConfig, StressReport, Target, TargetStats, Turn};
use crate::strategy::Strategy;

pub struct StrategyTarget {
    strategy: Arc<dyn Strategy>,
    plan: Arc<StressConfig>,
    lanes: u32,
}

impl StrategyTarget {
    /// `lanes`: how many users may book at once (one per pooled connection they book on).
    pub fn new(strategy: Arc<dyn Strategy>, plan: &StressConfig, lanes: u32) -> Self {
        Self {
            lanes: strategy.lanes(lanes),
            strategy,
            plan: Arc::new(plan.clone()),
        }
    }

    /// One lane per connection of `repo`'s pool but one, which stays free for reading the
    /// final state.
    pub fn on_pool(strategy: Arc<dyn Strategy>, plan: &StressConfig, repo: &Repo) -> Self {
        let lanes = repo
            .pool()
            .options()
            .get_max_connections()
            .saturating_sub(1);
        Self::new(strategy, plan, lanes)
    }
}

#[async_trait]
impl Target for StrategyTarget {
    async fn warm_up(&self, lanes: u32) -> Result<(), BookingError> {
        self.strategy.warm_up(lanes).await
    }

    fn lanes(&self) -> u32 {
        self.lanes
    }

    async fn attempt(&self, turn: Turn) -> Attempt {
        let request = super::request_for(&self.plan, turn);
        let result = self.strategy.book(&request).await;
        Attempt {
            request: Some(request),
            result,
        }
    }

    fn stats(&self) -> TargetStats {
        TargetStats {
            strategy: self.strategy.stats(),
            remote: None,
        }
    }
}

/// Runs the race described by `config` with `strategy` in this process, on `repo`'s pool:
/// prepare, open the pool's connections, race, judge from the database. `progress` advances
/// once per finished user (pass a hidden bar for none).
pub async fn run(
    repo: &Repo,
    strategy: Arc<dyn Strategy>,
    config: &StressConfig,
    progress: &ProgressBar,
) -> Result<StressReport, BookingError> {
    let target = StrategyTarget::on_pool(strategy, config, repo);
    crate::run::run_with_chaos(
        repo,
        Arc::new(target),
        Vec::new(),
        config,
        &crate::stop::Stop::new(),
        progress,
    )
    .await
}
