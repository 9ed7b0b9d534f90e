//! Exponential backoff with full jitter, shared by the lock's deadline policy and the
//! serializable strategy's retries.
//!
//! Why jitter: waiters that all fail at the same instant and sleep the same time wake up together
//! and collide again, in lock-step, round after round. "Full jitter" sleeps a uniformly random
//! time between zero and the exponential ceiling, which spreads them out; it is the variant
//! that does the least total work for contended resources.

use std::time::Duration;

/// How a contended operation is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Backoff {
    /// The ceiling of the first pause; it doubles with every attempt…
    pub base: Duration,
    /// …up to this.
    pub cap: Duration,
}

impl Backoff {
    /// The pause after failed attempt `attempt` (1-based): uniform in
    /// `[0, min(cap, base · 2^(attempt-1))]`.
    pub fn pause(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::random_range(0..=micros))
    }

    /// The upper bound of [`pause`](Self::pause) for `attempt`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_then_stops_at_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
        };
        let ceilings: Vec<_> = (1..=5).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, vec![10, 20, 40, 50, 50]);
        assert_eq!(b.ceiling(1000), Duration::from_millis(50));
    }

    #[test]
    fn pauses_stay_under_the_ceiling() {
        let b = Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(80),
        };
        for attempt in 1..10 {
            assert!(b.pause(attempt) <= b.ceiling(attempt));
        }
    }
}
