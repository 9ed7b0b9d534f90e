//! `batched`: group commit in the client. Concurrent bookings of one stay in one process queue
//! behind one combiner, which books them all with one statement per batch.
//!
//! **What it is for:** a flash sale, the other way round from `sharded`. The hot night keeps
//! its one row, but instead of one lock, one round trip and one commit per booking, a whole
//! batch shares them: the statement ([`Repo::book_batch`]) locks the stay's nights, grants as
//! many of the batch as they have rooms left, in arrival order, increments every night by that
//! many and inserts their rows; each waiting booking is then handed its own outcome (created,
//! or sold out). This is what PolarDB's and TaurusDB's hot-row updates do inside the engine,
//! done by the application on a stock PostgreSQL.
//!
//! **What it prevents:** the race, as `one-statement` does: the grant is computed and written
//! in one statement, under the nights' row locks. Safe across processes and replicas because
//! the condition is in the statement: two processes' combiners are just two batches, and the
//! second waits for the first's commit and grants from what is left.
//!
//! **What a batch costs, and saves.** A batch is whoever queued while the previous batch of the
//! same stay was in flight, so an idle system sends a batch of one at once: no timer, no
//! added delay. Under load, a booking waits for at most the batch ahead of it, then for its
//! own — up to two statements' time, where `one-statement` waits behind every booking ahead of
//! it on the row. What it saves: one round trip, one row lock and one commit (one WAL flush)
//! per batch instead of per booking. What it cannot do: slow work between the check and the
//! write (as `one-statement`; for a payment, `reserve`), or batch across processes.
//!
//! Its one step, for `interleave`, is joining the queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{BuildError, Context, Needs, Shows, Spec, Strategy, StrategyStats};
use crate::domain::{BookingRequest, Outcome, RoomId, Stay};
use crate::error::BookingError;
use crate::repo::Repo;
use crate::steps;

/// `--mode batched`.
pub(super) const SPEC: Spec = Spec {
    name: "batched",
    summary: "Group commit: concurrent bookings of one stay in one process share one statement, which grants as many as the nights have left, in arrival order",
    needs: Needs::Postgres,
    steps: &["queue"],
    shows: Shows::Safe,
    waits_with_lock_policy: false,
    slow_work: false,
    checks_stay: true,
    build,
};

/// The most bookings one statement carries: a bound on its size, far above what a process's
/// lanes queue between two batches.
const MAX_BATCH: usize = 1_000;

fn build(ctx: Context) -> Result<Arc<dyn Strategy>, BuildError> {
    Ok(Arc::new(Batched {
        repo: ctx.repo,
        queues: Arc::default(),
        counts: Arc::default(),
    }))
}

/// The stay a combiner batches: bookings of the same room and nights.
type Key = (RoomId, NaiveDate, NaiveDate);

/// The combiners' queues, one per stay being booked right now.
type Queues = Arc<Mutex<HashMap<Key, mpsc::UnboundedSender<Waiter>>>>;

pub struct Batched {
    repo: Repo,
    queues: Queues,
    counts: Arc<Counts>,
}

/// One booking waiting in a combiner's queue.
struct Waiter {
    user: Uuid,
    reply: oneshot::Sender<Reply>,
}

/// What the combiner hands a waiting booking.
enum Reply {
    Booked {
        booking_id: i64,
    },
    Full {
        night: NaiveDate,
    },
    /// Not every night of the stay has an inventory row: the booking finds out which itself.
    Unbookable,
    /// The batch's statement failed; every booking in it shares the error.
    Failed(Arc<sqlx::Error>),
}

#[derive(Default)]
struct Counts {
    queued: AtomicU64,
    batches: AtomicU64,
    bookings: AtomicU64,
    largest: AtomicU64,
}

/// What `batched` counted: how many statements carried how many bookings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchStats {
    /// Bookings that joined a queue: those carried, and (mid-run) those still waiting.
    pub queued: u64,
    pub batches: u64,
    /// Bookings carried, over all batches.
    pub bookings: u64,
    /// The most one batch carried.
    pub largest: u64,
}

impl BatchStats {
    /// Adds another process's counts.
    pub fn merge(&mut self, other: &BatchStats) {
        self.queued += other.queued;
        self.batches += other.batches;
        self.bookings += other.bookings;
        self.largest = self.largest.max(other.largest);
    }

    /// Bookings per batch, on average.
    pub fn mean(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.bookings as f64 / self.batches as f64
        }
    }
}

impl Batched {
    /// Queues `waiter` behind the combiner of its stay, starting one when there is none.
    fn enqueue(&self, key: Key, stay: Stay, waiter: Waiter) {
        // The map's lock orders this with a combiner leaving (see `combine`): a waiter is sent
        // either to a combiner that will still look at its queue, or to a new one.
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        self.counts.queued.fetch_add(1, Ordering::Relaxed);
        let waiter = match queues.get(&key) {
            Some(queue) => match queue.send(waiter) {
                Ok(()) => return,
                Err(mpsc::error::SendError(waiter)) => waiter,
            },
            None => waiter,
        };
        let (queue, receiver) = mpsc::unbounded_channel();
        // The receiver is right here: the send cannot fail.
        let _ = queue.send(waiter);
        queues.insert(key, queue);
        tokio::spawn(combine(
            self.repo.clone(),
            Arc::clone(&self.queues),
            key,
            stay,
            receiver,
            Arc::clone(&self.counts),
        ));
    }
}

/// The combiner of one stay: takes everyone who queued while the previous batch was in flight,
/// books them with one statement, answers each, and leaves when nobody is waiting.
async fn combine(
    repo: Repo,
    queues: Queues,
    key: Key,
    stay: Stay,
    mut receiver: mpsc::UnboundedReceiver<Waiter>,
    counts: Arc<Counts>,
) {
    let mut batch = Vec::new();
    // Kept across batches while there are any; a broken one is dropped and another taken.
    let mut connection = None;
    loop {
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(waiter) => batch.push(waiter),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            let mut queues = queues.lock().unwrap_or_else(PoisonError::into_inner);
            if receiver.is_empty() {
                queues.remove(&key);
                return;
            }
            continue;
        }
        let users: Vec<Uuid> = batch.iter().map(|w| w.user).collect();
        counts.batches.fetch_add(1, Ordering::Relaxed);
        counts
            .bookings
            .fetch_add(users.len() as u64, Ordering::Relaxed);
        counts
            .largest
            .fetch_max(users.len() as u64, Ordering::Relaxed);
        let booked = match connection.take() {
            Some(conn) => Ok(conn),
            None => repo.combiner_connection().await,
        };
        let booked = match booked {
            Ok(mut conn) => {
                let done = repo.book_batch(&mut conn, key.0, &stay, &users).await;
                if done.is_ok() {
                    connection = Some(conn);
                }
                done
            }
            Err(error) => Err(error),
        };
        let replies = match booked {
            Ok(done) if done.nights == i64::from(stay.len()) => {
                let mut ids: HashMap<Uuid, Vec<i64>> = HashMap::new();
                for (user, id) in done.booked {
                    ids.entry(user).or_default().push(id);
                }
                let full = done.tightest.unwrap_or(stay.from());
                // Ids were granted to the first arrivals; among one user's requests, in order.
                users
                    .iter()
                    .map(|user| match ids.get_mut(user).and_then(|mine| mine.pop()) {
                        Some(booking_id) => Reply::Booked { booking_id },
                        None => Reply::Full { night: full },
                    })
                    .collect::<Vec<_>>()
            }
            Ok(_) => users.iter().map(|_| Reply::Unbookable).collect(),
            Err(error) => {
                let error = Arc::new(error);
                users
                    .iter()
                    .map(|_| Reply::Failed(Arc::clone(&error)))
                    .collect()
            }
        };
        for (waiter, reply) in batch.drain(..).zip(replies) {
            // A booking that gave up waiting (Ctrl-C, a dropped request) is not told.
            let _ = waiter.reply.send(reply);
        }
    }
}

#[async_trait]
impl Strategy for Batched {
    /// Its statement, prepared on every lane before the start (see [`Repo::warm_statements`]).
    async fn warm_up(&self, connections: u32) -> Result<(), BookingError> {
        Ok(self.repo.warm_statements(connections).await?)
    }

    fn stats(&self) -> StrategyStats {
        StrategyStats {
            batches: Some(BatchStats {
                queued: self.counts.queued.load(Ordering::Relaxed),
                batches: self.counts.batches.load(Ordering::Relaxed),
                bookings: self.counts.bookings.load(Ordering::Relaxed),
                largest: self.counts.largest.load(Ordering::Relaxed),
            }),
            ..StrategyStats::default()
        }
    }

    #[tracing::instrument(name = "batched", skip_all, fields(user = %request.user))]
    async fn book(&self, request: &BookingRequest) -> Result<Outcome, BookingError> {
        steps::step("queue").await;
        let (reply, answer) = oneshot::channel();
        let key = (request.room, request.stay.from(), request.stay.to());
        let waiter = Waiter {
            user: request.user.as_uuid(),
            reply,
        };
        self.enqueue(key, request.stay, waiter);
        match answer.await {
            Ok(Reply::Booked { booking_id }) => Ok(Outcome::Created { booking_id }),
            Ok(Reply::Full { night }) => Ok(Outcome::SoldOut { night }),
            Ok(Reply::Unbookable) => {
                self.repo
                    .ensure_bookable(request.room, &request.stay)
                    .await?;
                Err(BookingError::Inconsistent(format!(
                    "room {} lost inventory rows for {} while the batch ran",
                    request.room, request.stay
                )))
            }
            Ok(Reply::Failed(error)) => Err(BookingError::Batch(error)),
            Err(_) => Err(BookingError::Inconsistent(
                "the combiner of this booking's batch stopped before answering".to_owned(),
            )),
        }
    }
}
