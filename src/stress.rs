//! The stress runner: many users, one slot, released together.
//!
//! Workers report, one collector aggregates, the verdict comes last — from the database:
//! 1. check the slot exists (nothing is written for a bad `--room`/`--from`), then prepare it;
//! 2. open every pooled connection before the race, so no user pays for a handshake after it;
//! 3. spawn one task per user; each waits on a [`Barrier`] so that all of them start their
//!    booking in the same instant — with `--hold-ms` longer than a check, every naive user's
//!    check happens before any user's write, which makes the race certain, not likely;
//! 4. each task sends its result on a channel; the collector tallies and drives the progress bar;
//! 5. the final state is **read back from PostgreSQL**, and the verdict is computed from it,
//!    never from the tallies.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Days;
use indicatif::ProgressBar;
use serde::Serialize;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::chaos::{self, Chaos};
use crate::db;
use crate::domain::{BookingRequest, Outcome, RoomId, Stay, UserId};
use crate::error::{BookingError, InputError};
use crate::lock::LockPolicy;
use crate::lock::RedisLock;
use crate::metrics::Latencies;
use crate::repo::{NightState, Repo};
use crate::stop::Stop;
use crate::strategy::{Expectation, Mode, RetryPolicy, Strategy, StrategyStats};
use crate::timeline::{self, Marks, Track};

/// A validated `stress` run.
#[derive(Debug, Clone)]
pub struct StressConfig {
    pub mode: Mode,
    pub users: u32,
    /// The first room; with `rooms > 1`, users are spread over `room`, `room + 1`, ….
    pub room: RoomId,
    pub rooms: u32,
    /// The contested stay (`--from`, `--nights`/`--to`).
    pub stay: Stay,
    /// Users book stays of the same length that start on different nights, all covering the
    /// stay's first night: user `i` starts `i mod nights` nights before `--from`.
    pub mixed_ranges: bool,
    /// `total_inventory` every night of the slot is set to before the run.
    pub inventory: i32,
    pub hold: Duration,
    pub lock_policy: LockPolicy,
    pub retry: RetryPolicy,
    /// `reserve`'s simulated payments (`--fail-rate`, `--fail-seed`).
    pub payments: crate::strategy::Payments,
    pub expect: Expectation,
    /// Operating-system processes the users are split over (`--processes`).
    pub processes: u32,
    /// Faults to inject during the run (`--chaos`).
    pub chaos: Vec<Chaos>,
    /// Closed loop for this long (`--duration`): every user books again as soon as its last
    /// booking ended, one night at a time, spread over the rooms and the nights of the stay.
    pub duration: Option<Duration>,
    /// `--target`: how many HTTP servers the users race (0: the strategies run in this
    /// process). Over HTTP, the hold and the lock policy are the servers'.
    pub servers: u32,
    /// `--timeline`, `--trace`, `--report`: record every user's phases.
    pub record: bool,
}

impl StressConfig {
    /// The reference run with `mode`: 20 users, room 1, the night of 2024-12-25 with one room,
    /// 200 ms of work, the reference lock policy (5 s TTL, 10 retries 50 ms apart) and 20
    /// serializable retries — what `stress --mode M` runs without other flags.
    pub fn reference(mode: Mode) -> Self {
        let night = chrono::NaiveDate::from_ymd_opt(2024, 12, 25).unwrap_or(chrono::NaiveDate::MIN);
        Self {
            mode,
            users: 20,
            room: RoomId::new(1).unwrap_or_else(|_| unreachable!("1 is a valid room id")),
            rooms: 1,
            stay: Stay::nights_from(night, 1)
                .unwrap_or_else(|_| unreachable!("one night is a stay")),
            mixed_ranges: false,
            inventory: 1,
            hold: Duration::from_millis(200),
            lock_policy: LockPolicy {
                ttl: Duration::from_secs(5),
                retries: 10,
                retry_delay: Duration::from_millis(50),
                wait: None,
                renew: false,
            },
            retry: RetryPolicy {
                retries: 20,
                backoff: crate::backoff::Backoff {
                    base: Duration::from_millis(20),
                    cap: Duration::from_millis(320),
                },
            },
            payments: crate::strategy::Payments::default(),
            expect: mode.default_expectation(1),
            processes: 1,
            chaos: Vec::new(),
            duration: None,
            servers: 0,
            record: false,
        }
    }

    /// The rooms the users are spread over.
    pub fn rooms(&self) -> impl Iterator<Item = RoomId> + use<> {
        let first = self.room.get();
        (0..self.rooms as i32).filter_map(move |k| RoomId::new(first.saturating_add(k)).ok())
    }

    /// Every night any user books: the stay, widened backwards for mixed ranges. This is what
    /// is prepared before and read after the run.
    pub fn region(&self) -> Result<Stay, InputError> {
        if !self.mixed_ranges {
            return Ok(self.stay);
        }
        let back = u64::from(self.stay.len() - 1);
        let from = self
            .stay
            .from()
            .checked_sub_days(Days::new(back))
            .unwrap_or(self.stay.from());
        Ok(Stay::between(from, self.stay.to())?)
    }

    /// The request of user `i`.
    pub fn request(&self, i: u32) -> BookingRequest {
        let room = RoomId::new(
            self.room
                .get()
                .saturating_add((i % self.rooms.max(1)) as i32),
        )
        .unwrap_or(self.room);
        let stay = if self.mixed_ranges {
            let back = u64::from(i % self.stay.len());
            self.stay
                .from()
                .checked_sub_days(Days::new(back))
                .and_then(|from| Stay::nights_from(from, self.stay.len()).ok())
                .unwrap_or(self.stay)
        } else {
            self.stay
        };
        BookingRequest {
            user: UserId::random(),
            room,
            stay,
        }
    }

    /// Booking `j` of user `i` in a closed loop: one night, rooms and nights taken round-robin
    /// so that concurrent users mostly book different slots.
    pub fn sustained_request(&self, i: u32, j: u32) -> BookingRequest {
        let rooms = self.rooms.max(1);
        let nights = self.stay.len().max(1);
        let room = RoomId::new(self.room.get().saturating_add(((i + j) % rooms) as i32))
            .unwrap_or(self.room);
        let offset = u64::from((i / rooms + j.wrapping_mul(7)) % nights);
        let stay = self
            .stay
            .from()
            .checked_add_days(Days::new(offset))
            .and_then(|from| Stay::nights_from(from, 1).ok())
            .unwrap_or(self.stay);
        BookingRequest {
            user: UserId::random(),
            room,
            stay,
        }
    }

    /// A Redis lock (`locked`, `fenced`, `redlock`) with a fixed retry budget is known to refuse
    /// users while rooms are left: the budget runs out while the lock is still changing hands.
    /// The same policy gets the same judgement, whichever lock it drives; every other strategy
    /// (and a lock with a deadline, `--lock-wait-ms`) is expected not to under-sell.
    pub fn under_selling_expected(&self) -> bool {
        self.mode.waits_with_lock_policy() && self.lock_policy.wait.is_none()
    }
}

/// What the users reported. Used for the outcome table only; verdicts come from [`NightState`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub created: u32,
    pub sold_out: u32,
    pub lock_not_acquired: u32,
    pub retries_exhausted: u32,
    /// Stale writes the database rejected by their fencing token (`fenced`).
    pub fenced_out: u32,
    /// Users that did not book because the run was interrupted (Ctrl-C).
    pub interrupted: u32,
    /// `reserve`: refused while every room left was on hold.
    pub on_hold: u32,
    /// `reserve`: payments that failed (holds cancelled).
    pub payment_failed: u32,
    /// `reserve`: holds that expired before their confirmation.
    pub hold_expired: u32,
    /// Error message → how many users failed with it.
    pub errors: BTreeMap<String, u32>,
}

impl Tally {
    fn add(&mut self, result: &Result<Outcome, BookingError>) {
        match result {
            Ok(Outcome::Created { .. }) => self.created += 1,
            Ok(Outcome::SoldOut { .. }) => self.sold_out += 1,
            // The lock could not be relied on: not acquired, or no longer valid at commit.
            Ok(Outcome::LockNotAcquired { .. } | Outcome::LockExpired { .. }) => {
                self.lock_not_acquired += 1
            }
            Ok(Outcome::RetriesExhausted { .. }) => self.retries_exhausted += 1,
            Ok(Outcome::FencedOut { .. }) => self.fenced_out += 1,
            Ok(Outcome::Interrupted) => self.interrupted += 1,
            Ok(Outcome::OnHold { .. }) => self.on_hold += 1,
            Ok(Outcome::PaymentFailed) => self.payment_failed += 1,
            Ok(Outcome::HoldExpired) => self.hold_expired += 1,
            Err(error) => self.add_error(error.to_string()),
        }
    }

    fn add_error(&mut self, message: String) {
        *self.errors.entry(message).or_default() += 1;
    }

    /// Users refused, whatever the reason (sold out, lock busy, retries, fenced, on hold,
    /// payment failed, hold expired).
    pub fn refused(&self) -> u32 {
        self.sold_out
            + self.lock_not_acquired
            + self.retries_exhausted
            + self.fenced_out
            + self.on_hold
            + self.payment_failed
            + self.hold_expired
    }

    pub fn error_count(&self) -> u32 {
        self.errors.values().sum()
    }
}

/// An invariant the final database state breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// A night has `booked_count > total_inventory`, or more confirmed rows than rooms.
    Overbooked,
    /// A night's confirmed rows ≠ its `booked_count`: increments were lost (counter drift).
    LostUpdate,
    /// A user was refused although every night of their stay still had a room at the end.
    UnderSold,
    /// A hold (`reserve`) was confirmed after its expiry, when its room may have been reclaimed
    /// and sold to someone else.
    ConfirmedAfterExpiry,
}

impl Verdict {
    /// What the nights' final state breaks, in a fixed order: oversold, drifted, confirmed
    /// after expiry. (Under-selling needs the refused users as well.)
    pub fn of_nights(nights: &[NightState]) -> Vec<Verdict> {
        [
            (nights.iter().any(NightState::oversold), Verdict::Overbooked),
            (nights.iter().any(NightState::drifted), Verdict::LostUpdate),
            (
                nights.iter().any(|n| n.confirmed_after_expiry > 0),
                Verdict::ConfirmedAfterExpiry,
            ),
        ]
        .into_iter()
        .filter_map(|(broken, verdict)| broken.then_some(verdict))
        .collect()
    }

    /// `SAFE`, or the verdicts joined by `+` (e.g. `OVERBOOKED+LOST_UPDATE`).
    pub fn join(verdicts: &[Verdict]) -> String {
        if verdicts.is_empty() {
            return "SAFE".to_owned();
        }
        verdicts
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>()
            .join("+")
    }

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Overbooked => "OVERBOOKED",
            Verdict::LostUpdate => "LOST_UPDATE",
            Verdict::UnderSold => "UNDER_SOLD",
            Verdict::ConfirmedAfterExpiry => "CONFIRMED_AFTER_EXPIRY",
        }
    }
}

/// Everything a finished run knows.
#[derive(Debug, Clone)]
pub struct StressReport {
    pub config: StressConfig,
    pub tally: Tally,
    /// Every night of every room of the slot, read from the database after the last user
    /// finished.
    pub nights: Vec<NightState>,
    /// Users refused although every night of their stay still had a room at the end.
    pub under_sold: u32,
    /// What the strategy counted (locks, retries).
    pub stats: StrategyStats,
    /// Per-user latency, from the barrier to the outcome.
    pub latency: Latencies,
    /// The same, per outcome (`created`, `sold_out`, `lock_not_acquired`, …, `error`).
    pub latency_by_outcome: BTreeMap<String, Latencies>,
    /// From the first user's start to the last user's end.
    pub elapsed: Duration,
    /// Bookings of earlier runs that preparing the slot deleted.
    pub cleared_bookings: u64,
    /// Every user's phases, when recorded.
    pub tracks: Vec<Track>,
    /// With `--processes`, each process's own figures.
    pub processes: Vec<ProcessRow>,
    /// With `--processes`, workers that stopped answering and were killed (their users count as
    /// errors), each said in a sentence. Any makes the run an error (exit 1).
    pub lost_workers: Vec<String>,
}

/// One worker process's share of a `--processes` run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessRow {
    pub process: u32,
    pub users: u32,
    pub created: u32,
    pub conflicts_sold_out: u32,
    pub conflicts_lock: u32,
    pub conflicts_retries: u32,
    pub errors: u32,
    pub elapsed_ms: u128,
}

impl StressReport {
    /// The core definition: a night is oversold or its counter disagrees with its rows.
    pub fn overbooked(&self) -> bool {
        self.nights.iter().any(NightState::overbooked)
    }

    /// Every invariant the database breaks, in a fixed order; empty means SAFE.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut verdicts = Verdict::of_nights(&self.nights);
        if self.under_sold > 0 {
            verdicts.push(Verdict::UnderSold);
        }
        verdicts
    }

    /// `SAFE`, or the verdicts joined by `+` (e.g. `OVERBOOKED+LOST_UPDATE`).
    pub fn verdict(&self) -> String {
        Verdict::join(&self.verdicts())
    }

    /// The night the one-line summary speaks of: the first overbooked one, else the first.
    pub fn headline_night(&self) -> Option<&NightState> {
        self.nights
            .iter()
            .find(|n| n.overbooked())
            .or_else(|| self.nights.first())
    }

    /// Whether the run showed what it was expected to. `safe` also requires that no user hit an
    /// error (unless `--chaos` caused them) — twenty failed users leave a consistent database,
    /// but prove nothing — and that
    /// nobody was refused while rooms were left, unless the strategy is known to do that
    /// ([`StressConfig::under_selling_expected`]).
    pub fn expectation_met(&self) -> bool {
        match self.config.expect {
            Expectation::Overbooking => self.overbooked(),
            Expectation::Any => true,
            Expectation::Safe => {
                // Under --chaos, errors are the injected fault; the invariants must still hold.
                !self.overbooked()
                    && !self.verdicts().contains(&Verdict::ConfirmedAfterExpiry)
                    && (self.tally.error_count() == 0 || !self.config.chaos.is_empty())
                    && (self.under_sold == 0 || self.config.under_selling_expected())
            }
        }
    }

    /// Bookings created per second of the run.
    pub fn bookings_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            f64::from(self.tally.created) / secs
        } else {
            0.0
        }
    }
}

/// What the users of one race reported (one process's share, with `--processes`).
#[derive(Debug, Clone, Default)]
pub struct RaceResult {
    pub tally: Tally,
    pub latency: Latencies,
    /// The same latencies split by outcome (`created`, `sold_out`, …, `error`): refusals and
    /// bookings rarely take the same time, and one distribution hides it.
    pub latency_by_outcome: BTreeMap<String, Latencies>,
    /// Users who were refused (not created, not failed): the candidates for under-selling.
    pub refused: Vec<BookingRequest>,
    pub stats: StrategyStats,
    /// From the first user's start to the last user's end.
    pub elapsed: Duration,
    /// Every user's phases, when recorded (`--timeline`, `--trace`, `--report`).
    pub tracks: Vec<Track>,
}

impl RaceResult {
    /// Adds another process's (or lane's) share.
    pub fn merge(&mut self, other: RaceResult) {
        let t = &mut self.tally;
        t.created += other.tally.created;
        t.sold_out += other.tally.sold_out;
        t.lock_not_acquired += other.tally.lock_not_acquired;
        t.retries_exhausted += other.tally.retries_exhausted;
        t.fenced_out += other.tally.fenced_out;
        t.interrupted += other.tally.interrupted;
        t.on_hold += other.tally.on_hold;
        t.payment_failed += other.tally.payment_failed;
        t.hold_expired += other.tally.hold_expired;
        for (message, count) in other.tally.errors {
            *t.errors.entry(message).or_default() += count;
        }
        self.latency.merge(&other.latency);
        for (outcome, latency) in &other.latency_by_outcome {
            self.latency_by_outcome
                .entry(outcome.clone())
                .or_default()
                .merge(latency);
        }
        self.refused.extend(other.refused);
        self.tracks.extend(other.tracks);
        self.stats.merge(&other.stats);
        self.elapsed = self.elapsed.max(other.elapsed);
    }
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
    fn record(
        &mut self,
        request: BookingRequest,
        result: &Result<Outcome, BookingError>,
        started: Instant,
        finished: Instant,
    ) {
        let race = &mut self.race;
        race.tally.add(result);
        let took = finished.saturating_duration_since(started);
        race.latency.record(took);
        let outcome = match result {
            Ok(outcome) => outcome.kind(),
            Err(_) => "error",
        };
        race.latency_by_outcome
            .entry(outcome.to_owned())
            .or_default()
            .record(took);
        if matches!(result, Ok(o) if !matches!(o, Outcome::Created { .. } | Outcome::Interrupted)) {
            race.refused.push(request);
        }
        self.first_start = Some(self.first_start.map_or(started, |t| t.min(started)));
        self.last_end = Some(self.last_end.map_or(finished, |t| t.max(finished)));
    }
}

/// Checks the slot (nothing is written for a bad room or night) and prepares it: inventory set,
/// counters zeroed, earlier bookings of those nights deleted. Returns how many were deleted.
pub async fn prepare(repo: &Repo, config: &StressConfig) -> Result<u64, BookingError> {
    let region = config.region()?;
    for room in config.rooms() {
        repo.ensure_bookable(room, &region).await?;
    }
    let mut cleared = 0;
    for room in config.rooms() {
        cleared += repo.prepare_slot(room, &region, config.inventory).await?;
    }
    Ok(cleared)
}

/// Races users `first_user .. first_user + config.users` through `strategy`, at most `lanes`
/// at a time (one per pooled connection). Every lane waits at one barrier, which also waits for
/// `go` — immediately ready for a single process, the parent's signal for a worker process — so
/// that all start their first booking in the same instant.
///
/// With no more users than lanes (every demonstration), each user has a lane of its own and they
/// all start together. With more (a scale run), a user is only a number until a lane takes it:
/// nobody waits for a pooled connection past its time-out, and memory does not grow with the
/// number of users. Latency is then measured from when a lane takes the user.
pub async fn race(
    strategy: Arc<dyn Strategy>,
    config: &StressConfig,
    first_user: u32,
    lanes: u32,
    go: impl Future<Output = ()>,
    stop: &Stop,
    progress: &ProgressBar,
) -> RaceResult {
    let lanes = config.users.min(lanes.max(1));
    let tally = Arc::new(StdMutex::new(Lane::default()));
    // The instant the barrier let the users go: the zero of their timelines.
    let origin = Arc::new(std::sync::OnceLock::new());
    let start_line = Arc::new(Barrier::new(lanes as usize + 1));
    let next_user = Arc::new(AtomicU32::new(0));
    let shared = Arc::new(config.clone());
    let mut users = JoinSet::new();
    for _ in 0..lanes {
        let (strategy, start_line, stop, config, next_user, progress) = (
            Arc::clone(&strategy),
            Arc::clone(&start_line),
            stop.clone(),
            Arc::clone(&shared),
            Arc::clone(&next_user),
            progress.clone(),
        );
        let (tally, origin) = (Arc::clone(&tally), Arc::clone(&origin));
        users.spawn(async move {
            start_line.wait().await;
            let origin = *origin.get_or_init(Instant::now);
            loop {
                let i = next_user.fetch_add(1, Ordering::Relaxed);
                if i >= config.users {
                    return;
                }
                let request = config.request(first_user.saturating_add(i));
                let started = Instant::now();
                // Phases are recorded only when asked for: no watcher on the hot path otherwise.
                let marks = config.record.then(|| Arc::new(Marks::default()));
                // Interrupted before starting: do not start.
                let result = match &marks {
                    _ if stop.is_stopped() => Ok(Outcome::Interrupted),
                    Some(marks) => {
                        let watcher: Arc<dyn crate::steps::Watcher> = Arc::clone(marks) as _;
                        crate::steps::watch(watcher, strategy.book(&request)).await
                    }
                    None => strategy.book(&request).await,
                };
                let finished = Instant::now();
                let track = marks.map(|marks| {
                    timeline::track(request.user, &marks, started, finished, origin, &result)
                });
                record(&tally, request, &result, started, track);
                progress.inc(1);
            }
        });
    }
    go.await;
    start_line.wait().await;
    collect(strategy, users, tally, progress).await
}

/// The closed loop of `--duration`: every user, released by one barrier, books again as soon as
/// its last booking ended, until the duration is over (or Ctrl-C).
///
/// As in [`race`], users run on at most `lanes` lanes, one per pooled connection: with more
/// users than lanes, booking `n` of the run goes to the next free lane, on behalf of user
/// `n mod users` — the closed loop keeps `lanes` bookings in flight, and no user waits for a
/// pooled connection past its time-out (2,000 users on 32 connections would otherwise).
pub async fn sustain(
    strategy: Arc<dyn Strategy>,
    config: &StressConfig,
    lanes: u32,
    duration: Duration,
    stop: &Stop,
    progress: &ProgressBar,
) -> RaceResult {
    let lanes = config.users.min(lanes.max(1));
    let tally = Arc::new(StdMutex::new(Lane::default()));
    let start_line = Arc::new(Barrier::new(lanes as usize));
    let next_booking = Arc::new(AtomicU32::new(0));
    let shared = Arc::new(config.clone());
    let mut users = JoinSet::new();
    for _ in 0..lanes {
        let (strategy, start_line, stop, config, next_booking, progress) = (
            Arc::clone(&strategy),
            Arc::clone(&start_line),
            stop.clone(),
            Arc::clone(&shared),
            Arc::clone(&next_booking),
            progress.clone(),
        );
        let tally = Arc::clone(&tally);
        users.spawn(async move {
            start_line.wait().await;
            let deadline = Instant::now() + duration;
            while Instant::now() < deadline && !stop.is_stopped() {
                let n = next_booking.fetch_add(1, Ordering::Relaxed);
                let users = config.users.max(1);
                let request = config.sustained_request(n % users, n / users);
                let started = Instant::now();
                let result = strategy.book(&request).await;
                record(&tally, request, &result, started, None);
                progress.inc(1);
            }
        });
    }
    collect(strategy, users, tally, progress).await
}

/// Records one booking's result (and its phases, when recorded) in the shared tally, under one
/// lock.
fn record(
    tally: &StdMutex<Lane>,
    request: BookingRequest,
    result: &Result<Outcome, BookingError>,
    started: Instant,
    track: Option<Track>,
) {
    let finished = Instant::now();
    let mut lane = tally.lock().unwrap_or_else(PoisonError::into_inner);
    lane.record(request, result, started, finished);
    lane.race.tracks.extend(track);
}

/// Waits for every lane, then takes the tally.
async fn collect(
    strategy: Arc<dyn Strategy>,
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
    race.stats = strategy.stats();
    race.elapsed = match (first_start, last_end) {
        (Some(start), Some(end)) => end.saturating_duration_since(start),
        _ => Duration::ZERO,
    };
    race
}

/// Reads every night of the slot back from the database and judges the race by it.
pub async fn judge(
    repo: &Repo,
    config: &StressConfig,
    race: RaceResult,
    cleared_bookings: u64,
) -> Result<StressReport, BookingError> {
    let region = config.region()?;
    let mut nights = Vec::new();
    for room in config.rooms() {
        match repo.slot_state(room, &region).await {
            Ok(state) => nights.extend(state),
            // No verdict without the database: say what the users reported, and why there is
            // nothing to judge it by.
            Err(error) => {
                return Err(BookingError::Unjudged {
                    tally: tally_line(&race.tally, config.users),
                    source: error,
                });
            }
        }
    }
    Ok(StressReport {
        config: config.clone(),
        under_sold: count_under_sold(&race.refused, &nights),
        tally: race.tally,
        nights,
        stats: race.stats,
        latency: race.latency,
        latency_by_outcome: race.latency_by_outcome,
        tracks: race.tracks,
        elapsed: race.elapsed,
        cleared_bookings,
        processes: Vec::new(),
        lost_workers: Vec::new(),
    })
}

/// Runs the race described by `config` with `strategy` in this process, on `repo`'s pool:
/// prepare, open the pool's connections, race, judge from the database. `progress` advances
/// once per finished user (pass a hidden bar for none).
pub async fn run(
    repo: &Repo,
    strategy: Arc<dyn Strategy>,
    config: &StressConfig,
    progress: &ProgressBar,
) -> Result<StressReport, BookingError> {
    run_with_chaos(repo, strategy, Vec::new(), config, &Stop::new(), progress).await
}

/// [`run`], injecting `config.chaos` while the users run (`redis`: the servers Redis faults
/// hit).
pub async fn run_with_chaos(
    repo: &Repo,
    strategy: Arc<dyn Strategy>,
    redis: Vec<RedisLock>,
    config: &StressConfig,
    stop: &Stop,
    progress: &ProgressBar,
) -> Result<StressReport, BookingError> {
    let cleared = prepare(repo, config).await?;
    let connections = repo
        .pool()
        .options()
        .get_max_connections()
        .min(config.users);
    db::warm_up(repo.pool(), connections).await?;
    // One connection stays free for reading the final state.
    let lanes = strategy.lanes().unwrap_or_else(|| {
        repo.pool()
            .options()
            .get_max_connections()
            .saturating_sub(1)
    });
    strategy.warm_up(lanes.min(config.users)).await?;
    let faults = tokio::spawn(chaos::inject(config.chaos.clone(), repo.clone(), redis));
    let race = match config.duration {
        Some(duration) => sustain(strategy, config, lanes, duration, stop, progress).await,
        None => {
            race(
                strategy,
                config,
                0,
                lanes,
                std::future::ready(()),
                stop,
                progress,
            )
            .await
        }
    };
    // Faults scheduled after the last user finished have nothing left to break.
    faults.abort();
    judge(repo, config, race, cleared).await
}

/// One line on what the users reported, for a run whose final state could not be read.
pub fn tally_line(tally: &Tally, users: u32) -> String {
    let mut line = format!(
        "{users} users: {} created, {} refused, {} failed",
        tally.created,
        tally.sold_out + tally.lock_not_acquired + tally.retries_exhausted + tally.fenced_out,
        tally.error_count()
    );
    if let Some((message, count)) = tally.errors.iter().max_by_key(|(_, count)| **count) {
        line.push_str(&format!(" ({count} × {message})"));
    }
    line
}

/// Refused users whose every night still had a room at the end: they could have been sold.
fn count_under_sold(refused: &[BookingRequest], nights: &[NightState]) -> u32 {
    let free: BTreeMap<_, _> = nights
        .iter()
        .map(|n| ((n.room, n.night), n.free()))
        .collect();
    let count = refused
        .iter()
        .filter(|request| {
            request
                .stay
                .nights()
                .all(|night| free.get(&(request.room, night)).is_some_and(|f| *f > 0))
        })
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}
