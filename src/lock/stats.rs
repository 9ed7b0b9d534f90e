//! What the lock did, counted over every operation of one [`RedisLock`] and its clones.

use super::*;

/// Counters over every lock operation of one [`RedisLock`], shared by all its clones, so a run
/// can report what the lock did without threading statistics through every call.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) acquired: AtomicU64,
    pub(super) busy_attempts: AtomicU64,
    /// Waits that a release notification ended (rather than the pause).
    pub(super) woken: AtomicU64,
    pub(super) released: AtomicU64,
    pub(super) lost: AtomicU64,
    /// Locks given back because the replicas did not acknowledge them in time.
    pub(super) unreplicated: AtomicU64,
    /// Time spent in `acquire`, successful or not. A std mutex: held for one record, never
    /// across an await.
    pub(super) wait: Mutex<Latencies>,
    /// Time from taking a lock to releasing it.
    pub(super) hold: Mutex<Latencies>,
}

pub(super) fn record(histogram: &Mutex<Latencies>, duration: Duration) {
    // A poisoned mutex only means another thread panicked mid-record; the data is still usable.
    histogram
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .record(duration);
}

impl Counters {
    /// Counts a wait that a release ended; passes `woken` on.
    pub(super) fn note_wake(&self, woken: Woken) -> Woken {
        if woken == Woken::Released {
            self.woken.fetch_add(1, Ordering::Relaxed);
        }
        woken
    }
}

pub(super) fn summary(histogram: &Mutex<Latencies>) -> Percentiles {
    histogram
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .summary()
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LockStats {
    /// Locks taken.
    pub locks_acquired: u64,
    /// `SET NX` attempts that found the key held by someone else.
    pub lock_busy_attempts: u64,
    /// Waits for a busy key that a release notification ended before the pause did: waiters
    /// handed the lock, not polling for it.
    #[serde(default)]
    pub lock_waits_woken_by_release: u64,
    /// Releases that found our own token and deleted it.
    pub locks_released: u64,
    /// Releases that found the key expired or held by another token, or that failed (Redis
    /// gone): the lock may not have protected the whole critical section.
    pub locks_expired_before_release: u64,
    /// Times the release-notification subscription dropped: waiters polled until it was back.
    #[serde(default)]
    pub lock_notifications_dropped: u64,
    /// Times it was subscribed again after a drop.
    #[serde(default)]
    pub lock_notifications_resubscribed: u64,
    /// Locks taken and given back at once because fewer than `--lock-replicas` replicas
    /// acknowledged them in time.
    #[serde(default)]
    pub locks_unreplicated: u64,
    /// On a cluster: the redirections and unavailability answers its nodes sent during the run
    /// (followed and retried by the client; see [`cluster`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<cluster::Redirections>,
    /// Time spent waiting for locks (per acquire, including those that gave up).
    pub lock_wait: Percentiles,
    /// Time locks were held (per released lock).
    pub lock_hold: Percentiles,
}

impl LockStats {
    /// Adds another process's counters. Percentiles cannot be added: the merged wait and hold
    /// figures are the worse of the two (an upper bound), and the counts are summed.
    pub fn merge(&mut self, other: &LockStats) {
        self.locks_acquired += other.locks_acquired;
        self.lock_busy_attempts += other.lock_busy_attempts;
        self.lock_waits_woken_by_release += other.lock_waits_woken_by_release;
        self.locks_released += other.locks_released;
        self.locks_expired_before_release += other.locks_expired_before_release;
        self.lock_notifications_dropped += other.lock_notifications_dropped;
        self.lock_notifications_resubscribed += other.lock_notifications_resubscribed;
        self.locks_unreplicated += other.locks_unreplicated;
        self.cluster = match (self.cluster, other.cluster) {
            (Some(mut mine), Some(theirs)) => {
                mine.merge(&theirs);
                Some(mine)
            }
            (mine, theirs) => mine.or(theirs),
        };
        self.lock_wait = self.lock_wait.worst(&other.lock_wait);
        self.lock_hold = self.lock_hold.worst(&other.lock_hold);
    }
}

/// A snapshot of the counters `c`.
pub(super) fn snapshot(c: &Counters) -> LockStats {
    LockStats {
        locks_acquired: c.acquired.load(Ordering::Relaxed),
        lock_busy_attempts: c.busy_attempts.load(Ordering::Relaxed),
        lock_waits_woken_by_release: c.woken.load(Ordering::Relaxed),
        locks_released: c.released.load(Ordering::Relaxed),
        locks_expired_before_release: c.lost.load(Ordering::Relaxed),
        lock_notifications_dropped: 0,
        lock_notifications_resubscribed: 0,
        locks_unreplicated: c.unreplicated.load(Ordering::Relaxed),
        cluster: None,
        lock_wait: summary(&c.wait),
        lock_hold: summary(&c.hold),
    }
}
