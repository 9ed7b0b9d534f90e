//! Release notifications: a waiter for a busy lock is woken when the lock is released, instead
//! of finding out at its next poll.
//!
//! **Why:** with polling alone, a lock that is released sits free until some waiter's pause ends;
//! at the reference policy (50 ms pauses) every hand-over costs up to 50 ms, and the reference
//! run (20 users, one room) ended a full retry budget after the holder had finished.
//!
//! **How:** the release script `PUBLISH`es on a channel named like the key, right after deleting
//! it. Each process keeps one pub/sub connection, subscribed to its own prefix's lock keys
//! (`PSUBSCRIBE {prefix}lock:*`), opened the first time one of its users has to wait. A release
//! is handed to **one** local waiter for that key ([`Notify::notify_one`]): waking them all would
//! send them all racing for the key, and all but one would spend an attempt for nothing. The
//! woken waiter tries at once; if it loses (to another process, or to a newcomer), it waits
//! again.
//!
//! **What still needs the poll:** whatever publishes nothing — a lock that expired at its TTL, a
//! release that happened just before the waiter registered, a pub/sub connection that failed. So
//! a waiter waits for a notification *or* its policy's pause, whichever comes first: the poll is
//! the fallback, and the retry budget is unchanged.
//!
//! **When the subscription drops** (Redis restarted, a network cut, `CLIENT KILL`), the listener
//! says so, subscribes again — backing off while Redis is unreachable — and counts both, so the
//! run's report can say that waiters polled meanwhile instead of silently losing the hand-over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Notify, OnceCell};

use super::REDIS_TIMEOUT;
use crate::stop::Stop;

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The key was released (or a stale notification arrived): try now.
    Released,
    /// The pause ran out without a notification: poll.
    PauseOver,
    /// The run is stopping.
    Stopped,
}

/// One process's listener for lock releases, shared by every clone of a `RedisLock`.
pub(crate) struct Releases {
    client: redis::Client,
    /// `PSUBSCRIBE` pattern matching this prefix's lock keys.
    pattern: String,
    waiting: Arc<Mutex<HashMap<String, Entry>>>,
    /// Whether the subscription is up; set once, by the first waiter.
    listening: OnceCell<bool>,
    /// How often the subscription dropped and came back, shared with the listener task.
    health: Arc<Health>,
}

/// What happened to the subscription since it was opened.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Times the subscription ended (its connection dropped).
    pub(crate) dropped: AtomicU64,
    /// Times it was opened again after a drop.
    pub(crate) resubscribed: AtomicU64,
}

/// The waiters of one key: how many, and where a release is handed to one of them.
struct Entry {
    notify: Arc<Notify>,
    waiters: usize,
}

impl Releases {
    pub(crate) fn new(client: redis::Client, key_prefix: &str) -> Self {
        Self {
            client,
            pattern: format!("{}lock:*", escape_glob(key_prefix)),
            waiting: Arc::default(),
            listening: OnceCell::new(),
            health: Arc::default(),
        }
    }

    /// (dropped, resubscribed): see [`Health`].
    pub(crate) fn health(&self) -> (u64, u64) {
        (
            self.health.dropped.load(Ordering::Relaxed),
            self.health.resubscribed.load(Ordering::Relaxed),
        )
    }

    /// Registers interest in `key` for as long as the returned [`Waiter`] lives. Registering
    /// once per acquire, not once per pause, means a release that lands between two pauses is
    /// kept (as a `Notify` permit) rather than lost.
    pub(crate) async fn waiter(&self, key: &str) -> Waiter {
        let listening = *self.listening.get_or_init(|| self.listen()).await;
        let notify = listening.then(|| {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = waiting.entry(key.to_owned()).or_insert_with(|| Entry {
                notify: Arc::new(Notify::new()),
                waiters: 0,
            });
            entry.waiters += 1;
            Arc::clone(&entry.notify)
        });
        Waiter {
            key: key.to_owned(),
            notify,
            waiting: Arc::clone(&self.waiting),
        }
    }

    /// Opens the subscription and spawns the task that dispatches releases. `false` (and a
    /// warning) when it cannot: waiters then poll, as they would without notifications.
    async fn listen(&self) -> bool {
        let pubsub = match subscribe(&self.client, &self.pattern).await {
            Ok(pubsub) => pubsub,
            Err(error) => {
                tracing::warn!(%error, "no release notifications; lock waiters will poll");
                return false;
            }
        };
        // The task holds the waiters weakly: once every handle on this lock is gone, it ends.
        let waiting = Arc::downgrade(&self.waiting);
        let (client, pattern, health) = (
            self.client.clone(),
            self.pattern.clone(),
            Arc::clone(&self.health),
        );
        tokio::spawn(async move {
            let mut pubsub = pubsub;
            loop {
                if !dispatch(pubsub, &waiting).await {
                    return;
                }
                health.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "release notifications lost; lock waiters poll until the subscription is back"
                );
                let Some(again) = resubscribe(&client, &pattern, &waiting).await else {
                    return;
                };
                pubsub = again;
                health.resubscribed.fetch_add(1, Ordering::Relaxed);
                tracing::info!("release notifications subscribed again");
            }
        });
        true
    }
}

/// Opens a pub/sub connection subscribed to `pattern`, within the command time-out.
async fn subscribe(client: &redis::Client, pattern: &str) -> Result<redis::aio::PubSub, String> {
    let subscribed = tokio::time::timeout(REDIS_TIMEOUT, async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.psubscribe(pattern).await?;
        Ok::<_, redis::RedisError>(pubsub)
    })
    .await;
    match subscribed {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("subscribing timed out after {REDIS_TIMEOUT:?}")),
    }
}

/// Hands each release to one waiter of its key until the subscription ends. `false` when
/// nobody is left to wake (every lock handle dropped): the listener can stop.
async fn dispatch(
    pubsub: redis::aio::PubSub,
    waiting: &Weak<Mutex<HashMap<String, Entry>>>,
) -> bool {
    // The sink is kept alive with the stream: dropping it could end the subscription.
    let (_sink, mut messages) = pubsub.split();
    while let Some(message) = messages.next().await {
        let Some(waiting) = waiting.upgrade() else {
            return false;
        };
        let waiting = waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = waiting.get(message.get_channel_name()) {
            entry.notify.notify_one();
        }
    }
    waiting.strong_count() > 0
}

/// Subscribes again after a drop, backing off (up to a second between tries) while Redis does
/// not answer; `None` once nobody is left to wake.
async fn resubscribe(
    client: &redis::Client,
    pattern: &str,
    waiting: &Weak<Mutex<HashMap<String, Entry>>>,
) -> Option<redis::aio::PubSub> {
    let mut pause = Duration::from_millis(50);
    loop {
        if waiting.strong_count() == 0 {
            return None;
        }
        match subscribe(client, pattern).await {
            Ok(pubsub) => return Some(pubsub),
            Err(error) => {
                tracing::debug!(%error, "release notifications: subscribing again failed")
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// A registered waiter for one key; unregisters itself when dropped. Without a listener it only
/// waits out its pause.
pub(crate) struct Waiter {
    key: String,
    notify: Option<Arc<Notify>>,
    waiting: Arc<Mutex<HashMap<String, Entry>>>,
}

impl Waiter {
    /// A waiter that no release can wake: it only polls.
    pub(crate) fn polling() -> Self {
        Self {
            key: String::new(),
            notify: None,
            waiting: Arc::default(),
        }
    }

    /// Waits until the key is released, `pause` has passed, or the run stops.
    pub(crate) async fn wait(&self, pause: Duration, stop: &Stop) -> Woken {
        let released = async {
            match &self.notify {
                Some(notify) => notify.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = released => Woken::Released,
            stopped = stop.sleep(pause) => if stopped { Woken::Stopped } else { Woken::PauseOver },
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.notify.is_none() {
            return;
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = waiting.get_mut(&self.key) {
            entry.waiters -= 1;
            if entry.waiters == 0 {
                waiting.remove(&self.key);
            }
        }
    }
}

/// Escapes the glob characters of a key prefix, so that `PSUBSCRIBE` matches it literally.
fn escape_glob(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_in_a_prefix_are_escaped() {
        assert_eq!(escape_glob("run:1:"), "run:1:");
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
