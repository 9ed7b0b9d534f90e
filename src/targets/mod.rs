//! What the runner ([`crate::run`]) drives — one file per kind of target:
//!
//! - [`strategy`]: booking-cli's own strategies, in this process, on its own schema;
//! - [`serve`]: booking-cli's own `serve` over HTTP (`stress --target`), on its own schema;
//! - [`endpoint`]: anyone's HTTP endpoint (`race`), judged by the user's own SQL.
//!
//! A new kind of target is a file here implementing [`Target`](crate::run::Target).

pub mod endpoint;
pub mod serve;
pub mod strategy;

pub use endpoint::EndpointTarget;
pub use serve::ServeTarget;
pub use strategy::StrategyTarget;

use crate::domain::BookingRequest;
use crate::run::{StressConfig, Turn};

/// The booking of `turn` under a plan on booking-cli's schema: user `turn.user`'s stay in a
/// burst, its booking number `turn.round` in the closed loop of `--duration`.
pub(crate) fn request_for(plan: &StressConfig, turn: Turn) -> BookingRequest {
    if plan.duration.is_some() {
        plan.sustained_request(turn.user, turn.round)
    } else {
        plan.request(turn.user)
    }
}
