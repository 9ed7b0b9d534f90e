//! A stop signal for Ctrl-C: set once, seen by every clone, awaitable.
//!
//! Stopping is cooperative: a user that has not started yet does not start, and a user waiting
//! for a lock or a retry gives up at its next pause — but a transaction already running is
//! allowed to finish and release its locks, so an interrupted run leaves nothing half-done.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Clone, Default)]
pub struct Stop {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    stopped: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks everyone to stop.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// Resolves once [`stop`](Self::stop) has been called.
    pub async fn stopped(&self) {
        loop {
            // Register before checking, so a stop between the two is not missed.
            let notified = self.inner.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps for `duration`, or less if stopped meanwhile; says whether it was stopped.
    pub async fn sleep(&self, duration: std::time::Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => self.is_stopped(),
            () = self.stopped() => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_stop_cuts_a_sleep_short() {
        let stop = Stop::new();
        let other = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            other.stop();
        });
        let started = std::time::Instant::now();
        assert!(stop.sleep(Duration::from_secs(10)).await);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
