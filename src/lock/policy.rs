//! How a lock is taken: its TTL, how patiently a busy one is retried, and the margins a
//! holder keeps against its expiry (clock drift, the give-back before a later night).

use super::*;

/// The clock-drift allowance for a TTL: 1 % of it plus 2 ms, as the Redlock description
/// suggests. A lock is relied on only until `TTL − drift` after its `SET` was sent: Redis
/// measures the TTL on its own clock, from when it received the command.
pub fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// How long before the validity of the nights already held a wait for a later night gives up:
/// a tenth of the TTL, so that giving them back (a round trip, on a machine that may be busy)
/// still finds them ours.
pub fn give_back_margin(ttl: Duration) -> Duration {
    ttl / 10
}

/// How a lock is taken: how long it lives and how patiently a busy one is retried.
///
/// Two waiting policies:
/// - **fixed retries** (the reference design): `retries` more attempts, `retry_delay` apart.
///   Every waiter sleeps the same time, so they poll in lock-step, and the budget runs out
///   while the lock is still changing hands — at inventory > 1 users are refused although
///   rooms are left.
/// - **a deadline** (`wait`): keep trying until `wait` has passed, pausing with exponential
///   backoff and full jitter (base `retry_delay`, ceiling 8 × `retry_delay`), so that waiters
///   spread out instead of colliding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LockPolicy {
    /// Lifetime of a taken lock (`PX`).
    #[serde(
        rename = "lock_ttl_ms",
        serialize_with = "as_millis",
        deserialize_with = "from_millis"
    )]
    pub ttl: Duration,
    /// Attempts after the first one; `retries = 10` means at most 11 `SET NX`. Ignored when
    /// `wait` is set.
    #[serde(rename = "lock_retries")]
    pub retries: u32,
    /// Pause between two attempts (fixed), or the base of the backoff (deadline).
    #[serde(
        rename = "lock_retry_delay_ms",
        serialize_with = "as_millis",
        deserialize_with = "from_millis"
    )]
    pub retry_delay: Duration,
    /// A deadline for taking the lock, instead of a number of retries.
    #[serde(
        rename = "lock_wait_ms",
        serialize_with = "opt_millis",
        deserialize_with = "opt_from_millis"
    )]
    pub wait: Option<Duration>,
    /// Renew held locks every ttl/3 while the work runs (`--lock-renew`).
    #[serde(rename = "lock_renew")]
    pub renew: bool,
    /// Replicas that must acknowledge a lock before it is held (`--lock-replicas`; 0: none).
    #[serde(rename = "lock_replicas", default)]
    pub replicas: u32,
}

impl LockPolicy {
    /// The pause before the next attempt, after `attempt` failed ones and `waited` so far; `None`
    /// when the policy says to give up.
    pub fn next_pause(&self, attempt: u32, waited: Duration) -> Option<Duration> {
        match self.wait {
            None if attempt <= self.retries => Some(self.retry_delay),
            None => None,
            Some(wait) => {
                // Never sleep past the deadline; one last attempt happens at it.
                let left = wait.saturating_sub(waited);
                (!left.is_zero()).then(|| self.backoff().pause(attempt).min(left))
            }
        }
    }

    /// The backoff of the deadline policy.
    pub fn backoff(&self) -> Backoff {
        let base = self.retry_delay.max(Duration::from_millis(1));
        Backoff {
            base,
            cap: base.saturating_mul(8),
        }
    }
}

pub(super) fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

pub(super) fn from_millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_millis)
}

pub(super) fn opt_from_millis<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    <Option<u64> as serde::Deserialize>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
}

pub(super) fn opt_millis<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_millis()),
        None => s.serialize_none(),
    }
}
