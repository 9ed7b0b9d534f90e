//! `interleave`: two or three users' bookings run step by step, in a chosen order — the race
//! proven ordering by ordering instead of made likely by a hold and a barrier.
//!
//! This is PostgreSQL's isolation tester applied to application-level strategies. Each user
//! runs the real strategy code (the `book` that `book`, `stress` and `serve` call) inside
//! [`steps::watch`]; at each step boundary the strategy hands control to this scheduler, which
//! lets exactly one step run at a time, in the order of the schedule:
//!
//! 1. **grant** the next step of the schedule whose user is parked at that step;
//! 2. **wait** until that user reaches its next boundary (the step completed), finishes, or
//!    **blocks**: PostgreSQL shows it waiting for a lock (`pg_blocking_pids`), or the strategy
//!    announces a busy Redis lock or mutex ([`steps::waiting`]). A blocked step is printed
//!    `<waiting ...>`, and the schedule goes on with the other users;
//! 3. **settle** before the next grant: a blocked user whose lock PostgreSQL has granted, or
//!    whose Redis lock or mutex is free when it tries again, runs to its next boundary
//!    (`<... completed>`). So what happens depends on the order of the steps alone, never on
//!    timing.
//!
//! A step of a blocked user waits for it: the schedule goes on with the others' steps, and
//! the deferred step runs once its user is parked again. Steps a booking never reaches (the
//! write of a sold-out booking) are skipped; a serializable attempt PostgreSQL aborted starts
//! over after the schedule. Only one user runs at a time, which is also how a PostgreSQL wait
//! is attributed: a backend of this run that starts waiting while one user runs is that
//! user's.
//!
//! The verdict of every ordering is read from the database after it, as for `stress`.

pub mod schedule;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::domain::{BookingRequest, Outcome, RoomId, Stay, UserId};
use crate::error::BookingError;
use crate::repo::{NightState, Repo};
use crate::run::verdict::{self, Verdict};
use crate::steps::{self, Watcher};
use crate::strategy::{Mode, Strategy};

pub use schedule::{Entry, user_name};

/// How long to wait for a step before asking whether it is blocked. Only the cost of a
/// blocked step depends on it, never what the run shows.
const POLL: Duration = Duration::from_millis(2);

/// What an interleaving runs on.
pub struct Setup {
    pub mode: Mode,
    pub strategy: Arc<dyn Strategy>,
    /// A pool of its own, whose connections carry an application name no other run uses
    /// (that is how its lock waits are found in `pg_stat_activity`), with a connection per
    /// user and one to watch and read.
    pub repo: Repo,
    pub users: usize,
    pub room: RoomId,
    pub stay: Stay,
    pub inventory: i32,
    /// Longest wait for any one step (`--db-timeout`): a step that neither finishes nor blocks
    /// within it is an error, not a hang.
    pub deadline: Duration,
}

/// Why an interleaving could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub enum InterleaveError {
    #[error("database error while watching the steps: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Booking(#[from] BookingError),
    #[error(
        "step {step} neither finished nor waited for a lock within {}",
        humantime::format_duration(*.waited)
    )]
    Stalled { step: String, waited: Duration },
    #[error(
        "{mode} ran a step it does not declare: {user}.{step} (its steps: {declared}); Mode::steps is out of date"
    )]
    Undeclared {
        mode: Mode,
        user: char,
        step: String,
        declared: String,
    },
}

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Line {
    /// A step started; `waiting` says what it blocked on, if it did; `state` is the slot after
    /// it (and whatever it set off) settled.
    Step {
        entry: String,
        waiting: Option<String>,
        /// Run after the schedule: a step it did not name, or an aborted attempt's retry.
        after: bool,
        state: Option<SlotState>,
    },
    /// A blocked step resumed and finished.
    Completed { entry: String },
    /// A step of the schedule the booking never reached.
    Skipped { entry: String },
    /// PostgreSQL aborted the user's attempt; it starts over.
    Aborted { user: char, reason: String },
    /// The user's booking ended.
    Outcome { user: char, status: String },
}

/// The slot as committed, read between two steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlotState {
    pub booked_count: i32,
    pub total_inventory: i32,
    pub confirmed_bookings: i64,
}

impl SlotState {
    fn of(nights: &[NightState]) -> Option<Self> {
        nights.first().map(|n| SlotState {
            booked_count: n.booked_count,
            total_inventory: n.total_inventory,
            confirmed_bookings: n.confirmed_bookings,
        })
    }
}

/// One ordering, run.
#[derive(Debug, Clone)]
pub struct Run {
    pub schedule: Vec<Entry>,
    pub lines: Vec<Line>,
    /// Each user's outcome: 201, 409 (why), or the error.
    pub outcomes: Vec<Result<Outcome, String>>,
    /// Steps that blocked (`b.lock-rows`), in the order they did.
    pub blocked_steps: Vec<String>,
    /// Attempts PostgreSQL aborted (and the users ran again).
    pub aborts: u32,
    /// The slot after the run, read from the database.
    pub nights: Vec<NightState>,
}

impl Run {
    pub fn overbooked(&self) -> bool {
        self.nights.iter().any(NightState::oversold)
    }

    pub fn lost_update(&self) -> bool {
        self.nights.iter().any(NightState::drifted)
    }

    /// A user was told "sold out" although a night of the slot still has a room at the end:
    /// the strategy refused a booking it could have made.
    pub fn under_sold(&self) -> bool {
        self.outcomes
            .iter()
            .any(|o| matches!(o, Ok(Outcome::SoldOut { .. })))
            && self.nights.iter().any(|n| n.free() > 0)
    }

    pub fn errors(&self) -> usize {
        self.outcomes.iter().filter(|o| o.is_err()).count()
    }

    /// What the slot's final state breaks, by the schema invariant `stress` judges by.
    pub fn verdicts(&self) -> Vec<Verdict> {
        verdict::of_nights(&self.nights)
    }

    /// `SAFE`, `OVERBOOKED`, `LOST_UPDATE` or both joined by `+`, from the database.
    pub fn verdict(&self) -> String {
        verdict::join(&self.verdicts(), verdict::Kind::Schema)
    }

    pub fn state(&self) -> Option<SlotState> {
        SlotState::of(&self.nights)
    }
}

/// What the scheduler hears from the users.
enum Event {
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
struct Gate {
    user: usize,
    events: mpsc::UnboundedSender<(usize, Event)>,
    /// One permit per step (or retry) the scheduler allows. Closed when the scheduler gives
    /// up, so that the booking runs to its end on its own and releases what it holds.
    go: Semaphore,
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

/// Where a user is, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Running, on its own, until its next event.
    Running,
    /// At the boundary before this step, waiting for a grant.
    Parked(&'static str),
    /// Blocked in this step, on a PostgreSQL lock (backend `pid`) or on something it announced.
    Blocked {
        step: &'static str,
        on: Blocker,
    },
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Blocker {
    Postgres { pid: i32 },
    Announced,
}

/// Prepares the slot and runs `schedule`; `transcript` also reads the slot after every step.
pub async fn run(
    setup: &Setup,
    schedule: &[Entry],
    transcript: bool,
) -> Result<Run, InterleaveError> {
    setup
        .repo
        .prepare_slot(
            setup.room,
            &setup.stay,
            setup.inventory,
            crate::repo::DEFAULT_SHARDS,
        )
        .await?;
    let (events_tx, events) = mpsc::unbounded_channel();
    let gates: Vec<Arc<Gate>> = (0..setup.users)
        .map(|user| {
            Arc::new(Gate {
                user,
                events: events_tx.clone(),
                go: Semaphore::new(0),
            })
        })
        .collect();
    drop(events_tx);
    let mut scheduler = Scheduler {
        setup,
        events,
        gates,
        states: vec![State::Running; setup.users],
        blocked_in: vec![None; setup.users],
        pending: (0..setup.users).map(|_| VecDeque::new()).collect(),
        outcomes: vec![None; setup.users],
        lines: Vec::new(),
        blocked_steps: Vec::new(),
        aborts: 0,
        transcript,
        tasks: JoinSet::new(),
    };
    let result = scheduler.run(schedule).await;
    // Whatever happened, no booking is left waiting for a grant: closed gates let each one run
    // to its end on its own, releasing its locks and transaction.
    for gate in &scheduler.gates {
        gate.go.close();
    }
    let finished = tokio::time::timeout(setup.deadline, async {
        while scheduler.tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        scheduler.tasks.abort_all();
    }
    result?;
    let nights = setup.repo.slot_state(setup.room, &setup.stay).await?;
    let outcomes = scheduler
        .outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err("did not finish".to_owned())))
        .collect();
    Ok(Run {
        schedule: schedule.to_vec(),
        lines: scheduler.lines,
        outcomes,
        blocked_steps: scheduler.blocked_steps,
        aborts: scheduler.aborts,
        nights,
    })
}

struct Scheduler<'a> {
    setup: &'a Setup,
    events: mpsc::UnboundedReceiver<(usize, Event)>,
    gates: Vec<Arc<Gate>>,
    states: Vec<State>,
    /// The step a user blocked in, until it completes (for `<... completed>`).
    blocked_in: Vec<Option<&'static str>>,
    /// Events of users other than the one being waited for, in the order they came.
    pending: Vec<VecDeque<Event>>,
    outcomes: Vec<Option<Result<Outcome, String>>>,
    lines: Vec<Line>,
    blocked_steps: Vec<String>,
    aborts: u32,
    transcript: bool,
    tasks: JoinSet<()>,
}

impl Scheduler<'_> {
    async fn run(&mut self, schedule: &[Entry]) -> Result<(), InterleaveError> {
        // Users start one at a time, each up to its first boundary.
        for user in 0..self.setup.users {
            self.spawn(user);
            self.await_user(user, "start").await?;
        }
        let mut queue: VecDeque<Entry> = schedule.iter().copied().collect();
        while !queue.is_empty() {
            self.prune(&mut queue);
            let ready = queue
                .iter()
                .position(|e| self.states[e.user] == State::Parked(e.step));
            match ready {
                Some(index) => {
                    if let Some(entry) = queue.remove(index) {
                        self.grant(entry, false).await?;
                    }
                }
                // Every step left belongs to a blocked (or restarting) user; something that
                // holds what they wait for must still move.
                None if !queue.is_empty() => self.settle_or_wait().await?,
                None => {}
            }
        }
        // The steps the schedule did not name, and the retries of aborted attempts, run to the
        // end, one user at a time.
        while self.states.iter().any(|s| *s != State::Done) {
            let parked = (0..self.setup.users).find_map(|user| match self.states[user] {
                State::Parked(step) => Some(Entry { user, step }),
                _ => None,
            });
            match parked {
                Some(entry) => self.grant(entry, true).await?,
                None => self.settle_or_wait().await?,
            }
        }
        Ok(())
    }

    fn spawn(&mut self, user: usize) {
        let gate = Arc::clone(&self.gates[user]);
        let events = gate.events.clone();
        let strategy = Arc::clone(&self.setup.strategy);
        let request = BookingRequest {
            user: UserId::random(),
            room: self.setup.room,
            stay: self.setup.stay,
        };
        self.tasks.spawn(async move {
            let watcher: Arc<dyn Watcher> = gate;
            let result = steps::watch(watcher, strategy.book(&request)).await;
            let _ = events.send((user, Event::Done(result)));
        });
    }

    /// Drops the schedule's entries that can no longer run: those of a finished user, and those
    /// of a user parked at another step than its next one in the schedule — it went past them
    /// (a sold-out booking skips its write), or it started over after an abort (its retry runs
    /// after the schedule).
    fn prune(&mut self, queue: &mut VecDeque<Entry>) {
        let mut kept = VecDeque::with_capacity(queue.len());
        // Only a user's next entry is compared with where it is parked.
        let mut first = vec![true; self.setup.users];
        for entry in queue.drain(..) {
            let skip = match &self.states[entry.user] {
                State::Done => true,
                State::Parked(step) => first[entry.user] && *step != entry.step,
                _ => false,
            };
            if !skip {
                first[entry.user] = false;
            }
            if skip {
                self.lines.push(Line::Skipped {
                    entry: entry.to_string(),
                });
            } else {
                kept.push_back(entry);
            }
        }
        *queue = kept;
    }

    /// Lets `entry` run, waits until it completes or blocks, then settles the others.
    async fn grant(&mut self, entry: Entry, after: bool) -> Result<(), InterleaveError> {
        self.lines.push(Line::Step {
            entry: entry.to_string(),
            waiting: None,
            after,
            state: None,
        });
        let line = self.lines.len() - 1;
        self.states[entry.user] = State::Running;
        self.gates[entry.user].go.add_permits(1);
        self.await_user(entry.user, entry.step).await?;
        self.settle().await?;
        if self.transcript {
            let nights = self
                .setup
                .repo
                .slot_state(self.setup.room, &self.setup.stay)
                .await?;
            if let Some(Line::Step { state, .. }) = self.lines.get_mut(line) {
                *state = SlotState::of(&nights);
            }
        }
        Ok(())
    }

    /// Waits until `user` (running) is parked, blocked or done. What other users report
    /// meanwhile (a waiter that the step released) is kept for [`settle`](Self::settle), so
    /// that a transcript always shows a step's own end before what it set off, however the
    /// two raced.
    async fn await_user(&mut self, user: usize, step: &'static str) -> Result<(), InterleaveError> {
        let started = Instant::now();
        while let Some(event) = self.pending[user].pop_front() {
            self.apply(user, event)?;
            if self.states[user] != State::Running {
                return Ok(());
            }
        }
        loop {
            match tokio::time::timeout(POLL, self.events.recv()).await {
                Ok(Some((from, event))) if from == user => self.apply(from, event)?,
                Ok(Some((from, event))) => self.pending[from].push_back(event),
                Ok(None) => return Ok(()),
                Err(_) => {
                    if let Some((pid, what)) = self.new_lock_wait(user).await? {
                        self.block(user, step, Blocker::Postgres { pid }, what);
                    }
                }
            }
            if self.states[user] != State::Running {
                return Ok(());
            }
            if started.elapsed() > self.setup.deadline {
                return Err(InterleaveError::Stalled {
                    step: format!("{}.{step}", user_name(user)),
                    waited: self.setup.deadline,
                });
            }
        }
    }

    /// A backend of this run that waits for a PostgreSQL lock and is not known to be another
    /// user's: `user`'s, since only it runs. Its pid and what it waits for.
    async fn new_lock_wait(
        &mut self,
        user: usize,
    ) -> Result<Option<(i32, String)>, InterleaveError> {
        let waits = self.setup.repo.lock_waits().await?;
        // The backends of the users already blocked; a backend is only a user's while it
        // waits (the next step may run on another pooled connection).
        let others: Vec<i32> = self
            .states
            .iter()
            .enumerate()
            .filter(|(u, _)| *u != user)
            .filter_map(|(_, state)| match state {
                State::Blocked {
                    on: Blocker::Postgres { pid },
                    ..
                } => Some(*pid),
                _ => None,
            })
            .collect();
        Ok(waits
            .into_iter()
            .find(|(pid, _)| !others.contains(pid))
            .map(|(pid, event)| {
                let what = match event.as_str() {
                    "transactionid" | "tuple" => format!("a PostgreSQL row lock ({event})"),
                    "advisory" => "a PostgreSQL advisory lock".to_owned(),
                    _ => format!("a PostgreSQL lock ({event})"),
                };
                (pid, what)
            }))
    }

    fn block(&mut self, user: usize, step: &'static str, on: Blocker, what: String) {
        if self.blocked_in[user].is_none() {
            self.blocked_in[user] = Some(step);
            let entry = format!("{}.{step}", user_name(user));
            self.blocked_steps.push(entry.clone());
            // The waiting note goes on the line that started the step.
            if let Some(Line::Step { waiting, .. }) = self
                .lines
                .iter_mut()
                .rev()
                .find(|l| matches!(l, Line::Step { entry: e, .. } if *e == entry))
            {
                *waiting = Some(what);
            }
        }
        self.states[user] = State::Blocked { step, on };
    }

    /// A blocked step that resumed has finished: `<... completed>`.
    fn completed(&mut self, user: usize) {
        if let Some(step) = self.blocked_in[user].take() {
            self.lines.push(Line::Completed {
                entry: format!("{}.{step}", user_name(user)),
            });
        }
    }

    fn apply(&mut self, user: usize, event: Event) -> Result<(), InterleaveError> {
        match event {
            Event::Before(step) => {
                if !self.setup.mode.steps().contains(&step) {
                    return Err(InterleaveError::Undeclared {
                        mode: self.setup.mode,
                        user: user_name(user),
                        step: step.to_owned(),
                        declared: self.setup.mode.steps().join(", "),
                    });
                }
                self.completed(user);
                self.states[user] = State::Parked(step);
            }
            Event::Waiting(what) => {
                let step = match self.states[user] {
                    State::Blocked { step, .. } => step,
                    _ => self.last_step(user).unwrap_or("?"),
                };
                self.block(user, step, Blocker::Announced, what);
            }
            Event::Aborted(reason) => {
                self.completed(user);
                self.aborts += 1;
                self.lines.push(Line::Aborted {
                    user: user_name(user),
                    reason,
                });
                // It sleeps its backoff and begins again: running until its next boundary.
                self.states[user] = State::Running;
            }
            Event::Done(result) => {
                self.completed(user);
                let status = match &result {
                    Ok(outcome) => describe(outcome),
                    Err(error) => format!("error: {error}"),
                };
                self.lines.push(Line::Outcome {
                    user: user_name(user),
                    status,
                });
                self.outcomes[user] = Some(result.map_err(|e| e.to_string()));
                self.states[user] = State::Done;
            }
        }
        Ok(())
    }

    /// The step `user` was last granted (the one it is in).
    fn last_step(&self, user: usize) -> Option<&'static str> {
        let name = user_name(user);
        self.lines.iter().rev().find_map(|line| match line {
            Line::Step { entry, .. } => {
                let (u, step) = entry.split_once('.')?;
                (u.starts_with(name))
                    .then(|| {
                        self.setup
                            .mode
                            .steps()
                            .iter()
                            .find(|s| **s == step)
                            .copied()
                    })
                    .flatten()
            }
            _ => None,
        })
    }

    /// Lets every blocked user that can go on do so, until none can: a PostgreSQL waiter whose
    /// lock was granted runs to its next boundary; a waiter on a Redis lock or a mutex tries
    /// once more. Restarting users are waited for up to their next boundary.
    async fn settle(&mut self) -> Result<(), InterleaveError> {
        loop {
            while let Ok((user, event)) = self.events.try_recv() {
                self.pending[user].push_back(event);
            }
            let mut moved = false;
            let waits: Vec<i32> = if self.states.iter().any(|s| {
                matches!(
                    s,
                    State::Blocked {
                        on: Blocker::Postgres { .. },
                        ..
                    }
                )
            }) {
                self.setup
                    .repo
                    .lock_waits()
                    .await?
                    .into_iter()
                    .map(|(pid, _)| pid)
                    .collect()
            } else {
                Vec::new()
            };
            for user in 0..self.setup.users {
                match self.states[user].clone() {
                    State::Blocked {
                        step,
                        on: Blocker::Postgres { pid },
                    } if !waits.contains(&pid) || !self.pending[user].is_empty() => {
                        self.states[user] = State::Running;
                        self.await_user(user, step).await?;
                        moved = true;
                    }
                    State::Blocked {
                        step,
                        on: Blocker::Announced,
                    } => {
                        self.states[user] = State::Running;
                        self.gates[user].go.add_permits(1);
                        self.await_user(user, step).await?;
                        // Busy again is no move; anything else is.
                        moved |= !matches!(
                            self.states[user],
                            State::Blocked {
                                on: Blocker::Announced,
                                ..
                            }
                        );
                    }
                    State::Running => {
                        let step = self.last_step(user).unwrap_or("retry");
                        self.await_user(user, step).await?;
                        moved = true;
                    }
                    _ => {}
                }
            }
            if !moved {
                return Ok(());
            }
        }
    }

    /// Nothing in the schedule can run now: settle, and if nothing moved, wait for the next
    /// event (a deadlock PostgreSQL breaks, a restart) within the deadline.
    async fn settle_or_wait(&mut self) -> Result<(), InterleaveError> {
        let before = self.states.clone();
        self.settle().await?;
        if self.states != before {
            return Ok(());
        }
        match tokio::time::timeout(self.setup.deadline, self.events.recv()).await {
            Ok(Some((user, event))) => {
                self.pending[user].push_back(event);
                self.settle().await
            }
            Ok(None) => Ok(()),
            Err(_) => Err(InterleaveError::Stalled {
                step: "the schedule".to_owned(),
                waited: self.setup.deadline,
            }),
        }
    }
}

/// An outcome as the transcript says it: `201 Created (booking 7)`, `409 sold out (…)`.
pub fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Created { booking_id } => format!("201 Created (booking {booking_id})"),
        Outcome::SoldOut { night } => format!("409 sold out ({night})"),
        Outcome::LockNotAcquired { key, attempts } => {
            format!("409 lock busy ({key}, {attempts} attempts)")
        }
        Outcome::RetriesExhausted { attempts } => {
            format!("409 retries exhausted ({attempts} attempts)")
        }
        Outcome::FencedOut { night } => format!("409 stale lock token ({night})"),
        Outcome::LockExpired { key } => format!("409 lock expired ({key})"),
        Outcome::OnHold { night } => format!("503 rooms on hold ({night})"),
        Outcome::PaymentFailed => "402 payment failed (hold cancelled)".to_owned(),
        Outcome::HoldExpired => "409 hold expired".to_owned(),
        Outcome::Interrupted => "interrupted".to_owned(),
        Outcome::Accepted { status } => format!("{status} accepted"),
        Outcome::Rejected { status } => format!("{status} rejected"),
    }
}

/// Every ordering of one strategy (or the one `--schedule` named), counted.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub mode: Mode,
    pub users: usize,
    /// Each user's steps, in order: `{"a": ["check", …], "b": […]}`.
    pub steps: std::collections::BTreeMap<String, Vec<&'static str>>,
    pub orderings: usize,
    /// Orderings after which a night was oversold (by its counter or its rows).
    pub overbooked: usize,
    /// Orderings after which a night's counter disagreed with its rows.
    pub lost_update: usize,
    /// Orderings in which a user was told "sold out" while a room was left at the end.
    pub under_sold: usize,
    /// Orderings in which at least one step blocked.
    pub blocked: usize,
    /// Orderings in which PostgreSQL aborted at least one attempt.
    pub aborted: usize,
    /// Orderings in which at least one user failed with an error.
    pub errors: usize,
    /// What the strategy must show: overbooking in some ordering (naive, lost-update), or
    /// safety in every one.
    pub expected: crate::strategy::Expectation,
    pub met: bool,
    pub results: Vec<RunResult>,
    /// The ordering shown step by step: the schedule given, else the first that overbooked,
    /// else the first in which a step blocked. Run again for it, so the database ends in its
    /// state.
    pub transcript: Option<Transcript>,
}

/// One ordering's line in `results`.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub schedule: String,
    pub verdict: String,
    pub blocked_steps: Vec<String>,
    pub booked_count: i32,
    pub confirmed_bookings: i64,
}

/// One ordering, step by step.
#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    pub schedule: String,
    pub verdict: String,
    pub lines: Vec<Line>,
    pub state: Option<SlotState>,
}

impl Transcript {
    pub fn of(run: &Run) -> Self {
        Self {
            schedule: schedule::display(&run.schedule),
            verdict: run.verdict(),
            lines: run.lines.clone(),
            state: run.state(),
        }
    }
}

impl Summary {
    /// Counts `runs` of `mode` and judges them against the strategy's expectation in one
    /// process.
    pub fn new(mode: Mode, users: usize, runs: &[Run], transcript: Option<Transcript>) -> Self {
        let count = |f: &dyn Fn(&Run) -> bool| runs.iter().filter(|r| f(r)).count();
        let overbooked = count(&|r| r.overbooked());
        let lost_update = count(&|r| r.lost_update());
        let under_sold = count(&|r| r.under_sold());
        let errors = count(&|r| r.errors() > 0);
        let expected = mode.default_expectation(1);
        // The same rule as `stress --repeat`: one ordering that breaks the invariant proves the
        // race; safety needs every ordering safe, with no user failing and nobody refused a
        // room that was left.
        let met = verdict::met_over_runs(
            expected,
            runs.iter().map(|r| {
                verdict::met(expected, &r.verdicts(), r.errors() == 0)
                    && !(expected == crate::strategy::Expectation::Safe && r.under_sold())
            }),
        );
        Self {
            mode,
            users,
            steps: (0..users)
                .map(|u| (user_name(u).to_string(), mode.steps().to_vec()))
                .collect(),
            orderings: runs.len(),
            overbooked,
            lost_update,
            under_sold,
            blocked: count(&|r| !r.blocked_steps.is_empty()),
            aborted: count(&|r| r.aborts > 0),
            errors,
            expected,
            met,
            results: runs
                .iter()
                .map(|r| {
                    let state = r.state();
                    RunResult {
                        schedule: schedule::display(&r.schedule),
                        verdict: r.verdict(),
                        blocked_steps: r.blocked_steps.clone(),
                        booked_count: state.map_or(0, |s| s.booked_count),
                        confirmed_bookings: state.map_or(0, |s| s.confirmed_bookings),
                    }
                })
                .collect(),
            transcript,
        }
    }
}
