//! The runner: drives a [`Target`] — many users released together, or a closed loop — and
//! tallies what they report. It knows nothing of schemas or protocols: the target says what one
//! user's attempt is, and judges the final state afterwards ([`super::run`]).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use indicatif::ProgressBar;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::tally::{RaceResult, TargetStats};
use crate::domain::{BookingRequest, Outcome, UserId};
use crate::error::BookingError;
use crate::stop::Stop;
use crate::timeline::{self, Marks, Track};

/// Which user an attempt is for: user `user`'s booking number `round` (always 0 in a burst;
/// the closed loop of `--duration` counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    pub user: u32,
    pub round: u32,
}

/// One user's attempt, as the target reports it.
#[derive(Debug)]
pub struct Attempt {
    /// The booking asked for, when the target books on booking-cli's schema: a refused one is
    /// a candidate for under-selling, and its user names its timeline lane.
    pub request: Option<BookingRequest>,
    /// The outcome (a success, or a refusal), or why the attempt failed.
    pub result: Result<Outcome, BookingError>,
}

/// Something the runner drives: booking-cli's strategies on its own schema, its own `serve`,
/// or anyone's HTTP endpoint. It is prepared and judged by its run's invariant; the runner only
/// warms it, asks for attempts and reads its counters.
#[async_trait]
pub trait Target: Send + Sync {
    /// Gets ready for `lanes` users at once, before the start barrier: connections opened,
    /// statements prepared — so that no user pays for a handshake after the start.
    async fn warm_up(&self, lanes: u32) -> Result<(), BookingError>;

    /// How many attempts may be in flight at once (one per pooled database connection, or one
    /// per HTTP connection).
    fn lanes(&self) -> u32;

    /// One user's attempt.
    async fn attempt(&self, turn: Turn) -> Attempt;

    /// What it counted over all its users (locks, retries, status codes).
    fn stats(&self) -> TargetStats;
}

/// How the users are released.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    /// Users `first_user .. first_user + users` (a worker process races its share).
    pub users: u32,
    pub first_user: u32,
    /// `--timeline`, `--trace`, `--report`: record every user's phases.
    pub record: bool,
}

/// The users' results, tallied where they happen, under a lock held for a few hundred
/// nanoseconds per booking: a booking costs no message to a collector (on a loaded runtime, a
/// cross-thread wake-up per booking), and one set of histograms serves every lane (a set per
/// lane would cost hundreds of kilobytes each).
#[derive(Debug, Default)]
struct Lane {
    race: RaceResult,
    first_start: Option<Instant>,
    last_end: Option<Instant>,
}

impl Lane {
    fn record(&mut self, attempt: Attempt, started: Instant, finished: Instant) {
        let race = &mut self.race;
        race.tally.add(&attempt.result);
        let took = finished.saturating_duration_since(started);
        race.latency.record(took);
        let outcome = match &attempt.result {
            Ok(outcome) => outcome.kind(),
            Err(_) => "error",
        };
        race.latency_by_outcome
            .entry(outcome.to_owned())
            .or_default()
            .record(took);
        let refused = matches!(&attempt.result, Ok(o) if Outcome::kind_is_refusal(o.kind()));
        if let (true, Some(request)) = (refused, attempt.request) {
            race.refused.push(request);
        }
        self.first_start = Some(self.first_start.map_or(started, |t| t.min(started)));
        self.last_end = Some(self.last_end.map_or(finished, |t| t.max(finished)));
    }
}

/// Races `burst.users` users through `target`, at most `lanes` at a time. Every lane waits at
/// one barrier, which also waits for `go` — immediately ready for a single process, the
/// parent's signal for a worker process — so that all start their first attempt in the same
/// instant.
///
/// With no more users than lanes (every demonstration), each user has a lane of its own and they
/// all start together. With more (a scale run), a user is only a number until a lane takes it:
/// nobody waits for a pooled connection past its time-out, and memory does not grow with the
/// number of users. Latency is then measured from when a lane takes the user.
pub async fn race(
    target: Arc<dyn Target>,
    burst: Burst,
    go: impl Future<Output = ()>,
    stop: &Stop,
    progress: &ProgressBar,
) -> RaceResult {
    let lanes = burst.users.min(target.lanes().max(1));
    let tally = Arc::new(StdMutex::new(Lane::default()));
    // The instant the barrier let the users go: the zero of their timelines.
    let origin = Arc::new(std::sync::OnceLock::new());
    let start_line = Arc::new(Barrier::new(lanes as usize + 1));
    let next_user = Arc::new(AtomicU32::new(0));
    let mut users = JoinSet::new();
    for _ in 0..lanes {
        let (target, start_line, stop, next_user, progress) = (
            Arc::clone(&target),
            Arc::clone(&start_line),
            stop.clone(),
            Arc::clone(&next_user),
            progress.clone(),
        );
        let (tally, origin) = (Arc::clone(&tally), Arc::clone(&origin));
        users.spawn(async move {
            start_line.wait().await;
            let origin = *origin.get_or_init(Instant::now);
            loop {
                let i = next_user.fetch_add(1, Ordering::Relaxed);
                if i >= burst.users {
                    return;
                }
                let turn = Turn {
                    user: burst.first_user.saturating_add(i),
                    round: 0,
                };
                let started = Instant::now();
                // Phases are recorded only when asked for: no watcher on the hot path otherwise.
                let marks = burst.record.then(|| Arc::new(Marks::default()));
                // Interrupted before starting: do not start.
                let attempt = match &marks {
                    _ if stop.is_stopped() => Attempt {
                        request: None,
                        result: Ok(Outcome::Interrupted),
                    },
                    Some(marks) => {
                        let watcher: Arc<dyn crate::steps::Watcher> = Arc::clone(marks) as _;
                        crate::steps::watch(watcher, target.attempt(turn)).await
                    }
                    None => target.attempt(turn).await,
                };
                let finished = Instant::now();
                let track = marks.map(|marks| {
                    let user = attempt
                        .request
                        .as_ref()
                        .map_or_else(UserId::random, |r| r.user);
                    timeline::track(user, &marks, started, finished, origin, &attempt.result)
                });
                record(&tally, attempt, started, track);
                progress.inc(1);
            }
        });
    }
    go.await;
    start_line.wait().await;
    collect(target, users, tally, progress).await
}

/// The closed loop of `--duration`: every user, released by one barrier, books again as soon as
/// its last booking ended, until the duration is over (or Ctrl-C).
///
/// As in [`race`], users run on at most `lanes` lanes, one per pooled connection: with more
/// users than lanes, booking `n` of the run goes to the next free lane, on behalf of user
/// `n mod users` — the closed loop keeps `lanes` bookings in flight, and no user waits for a
/// pooled connection past its time-out (2,000 users on 32 connections would otherwise).
pub async fn sustain(
    target: Arc<dyn Target>,
    users: u32,
    duration: Duration,
    stop: &Stop,
    progress: &ProgressBar,
) -> RaceResult {
    let lanes = users.min(target.lanes().max(1));
    let tally = Arc::new(StdMutex::new(Lane::default()));
    let start_line = Arc::new(Barrier::new(lanes as usize));
    let next_booking = Arc::new(AtomicU32::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..lanes {
        let (target, start_line, stop, next_booking, progress) = (
            Arc::clone(&target),
            Arc::clone(&start_line),
            stop.clone(),
            Arc::clone(&next_booking),
            progress.clone(),
        );
        let tally = Arc::clone(&tally);
        tasks.spawn(async move {
            start_line.wait().await;
            let deadline = Instant::now() + duration;
            while Instant::now() < deadline && !stop.is_stopped() {
                let n = next_booking.fetch_add(1, Ordering::Relaxed);
                let users = users.max(1);
                let turn = Turn {
                    user: n % users,
                    round: n / users,
                };
                let started = Instant::now();
                let attempt = target.attempt(turn).await;
                record(&tally, attempt, started, None);
                progress.inc(1);
            }
        });
    }
    collect(target, tasks, tally, progress).await
}

/// Records one attempt (and its phases, when recorded) in the shared tally, under one lock.
fn record(tally: &StdMutex<Lane>, attempt: Attempt, started: Instant, track: Option<Track>) {
    let finished = Instant::now();
    let mut lane = tally.lock().unwrap_or_else(PoisonError::into_inner);
    lane.record(attempt, started, finished);
    lane.race.tracks.extend(track);
}

/// Waits for every lane, then takes the tally.
async fn collect(
    target: Arc<dyn Target>,
    mut users: JoinSet<()>,
    tally: Arc<StdMutex<Lane>>,
    progress: &ProgressBar,
) -> RaceResult {
    let mut failed = Vec::new();
    while let Some(joined) = users.join_next().await {
        if let Err(join_error) = joined {
            failed.push(format!("user task failed: {join_error}"));
        }
    }
    let lane = std::mem::take(&mut *tally.lock().unwrap_or_else(PoisonError::into_inner));
    let (mut race, first_start, last_end) = (lane.race, lane.first_start, lane.last_end);
    // A lane that panicked lost its user; it still counts, as an error.
    for message in failed {
        race.tally.add_error(message);
    }
    progress.finish_and_clear();
    race.stats = target.stats();
    race.elapsed = match (first_start, last_end) {
        (Some(start), Some(end)) => end.saturating_duration_since(start),
        _ => Duration::ZERO,
    };
    race
}
