//! The gate each user's booking parks at, before each step: how the scheduler hears where a
//! user is and lets exactly one step run.

use super::*;

/// What the scheduler hears from the users.
pub(super) enum Event {
    /// Parked before this step.
    Before(&'static str),
    /// Found this busy (a Redis lock, a mutex); parked until told to try again.
    Waiting(String),
    /// PostgreSQL aborted the attempt; it starts over.
    Aborted(String),
    /// The booking ended.
    Done(Result<Outcome, BookingError>),
}

/// One user's side of the scheduler: the [`Watcher`] its booking runs under.
pub(super) struct Gate {
    pub(super) user: usize,
    pub(super) events: mpsc::UnboundedSender<(usize, Event)>,
    /// One permit per step (or retry) the scheduler allows. Closed when the scheduler gives
    /// up, so that the booking runs to its end on its own and releases what it holds.
    pub(super) go: Semaphore,
}

impl Gate {
    async fn wait_for_go(&self) {
        if let Ok(permit) = self.go.acquire().await {
            permit.forget();
        }
    }
}

#[async_trait]
impl Watcher for Gate {
    async fn before(&self, step: &'static str) {
        let _ = self.events.send((self.user, Event::Before(step)));
        self.wait_for_go().await;
    }

    async fn waiting(&self, what: String) -> bool {
        let _ = self.events.send((self.user, Event::Waiting(what)));
        self.wait_for_go().await;
        true
    }

    fn aborted(&self, reason: String) {
        let _ = self.events.send((self.user, Event::Aborted(reason)));
    }
}
