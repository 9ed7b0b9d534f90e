//! Step boundaries: the places where a booking can be paused and watched, one step at a time.
//!
//! Every strategy marks the boundaries of its steps by calling [`step`] (`"check"`, `"write"`,
//! `"commit"`, …, as its [`Mode::steps`](crate::strategy::Mode::steps) lists them), and its
//! waits by calling [`waiting`]. Nobody watches a `book`, `stress` or `serve` booking, and
//! there these calls return at once. `interleave` runs each user's booking inside [`watch`]:
//! then every boundary hands control to a [`Watcher`] that decides when the next step may run.
//! That is how `interleave` drives the real strategy code — the very functions the other
//! commands run — through a chosen order, instead of a model of it.
//!
//! The watcher is a tokio task-local, so it follows one user's booking and nothing else: the
//! strategies need no extra parameter, and two users of one strategy object are told apart
//! by the task they run in. A strategy must therefore not spawn the steps it marks.
//!
//! Waits are of two kinds. A PostgreSQL lock wait (a row lock, an advisory lock) happens
//! inside the server, where the watcher sees it with `pg_blocking_pids`. A wait in this
//! process — for a busy Redis lock, or an in-process mutex — is announced by the code that
//! waits, through [`waiting`]: the watcher then decides when it tries again, instead of a
//! timer or a release notification, so that *when* a waiter gets the lock depends on the
//! order of the steps only.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

/// Someone watching one user's booking step by step.
#[async_trait]
pub trait Watcher: Send + Sync {
    /// The booking is about to run `step`; returns when it may.
    async fn before(&self, step: &'static str);

    /// The booking found `what` busy (a Redis lock, a mutex). Returns `true` when the watcher
    /// decided when to try again (it has just said so), `false` when it only took note and the
    /// booking waits its own way.
    async fn waiting(&self, what: String) -> bool;

    /// PostgreSQL aborted the attempt (`reason`); the booking starts over.
    fn aborted(&self, reason: String);

    /// A point inside a step where the booking's phase changes without a boundary anyone may
    /// pause at — the start of the slow work (`work`), an HTTP request's send and response.
    /// Only a recorder cares; `interleave` ignores it.
    fn mark(&self, _phase: &'static str) {}
}

tokio::task_local! {
    static WATCHER: Arc<dyn Watcher>;
}

/// Runs `booking` with `watcher` watching its steps.
pub fn watch<F: Future>(watcher: Arc<dyn Watcher>, booking: F) -> impl Future<Output = F::Output> {
    WATCHER.scope(watcher, booking)
}

fn watcher() -> Option<Arc<dyn Watcher>> {
    WATCHER.try_with(Arc::clone).ok()
}

/// The boundary before `name`: returns at once unless the booking is watched.
pub async fn step(name: &'static str) {
    if let Some(watcher) = watcher() {
        watcher.before(name).await;
    }
}

/// Announces that `what` is busy. Returns `true` when a watcher has decided it is time to try
/// again; `false` when nobody watches (or the watcher only records), and the caller waits its
/// own way.
pub async fn waiting(what: impl FnOnce() -> String) -> bool {
    match watcher() {
        Some(watcher) => watcher.waiting(what()).await,
        None => false,
    }
}

/// Marks a change of phase inside a step (see [`Watcher::mark`]).
pub fn mark(phase: &'static str) {
    if let Some(watcher) = watcher() {
        watcher.mark(phase);
    }
}

/// Reports that PostgreSQL aborted the attempt and it will be run again.
pub fn aborted(reason: impl FnOnce() -> String) {
    if let Some(watcher) = watcher() {
        watcher.aborted(reason());
    }
}
