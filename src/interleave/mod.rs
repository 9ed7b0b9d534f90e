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
//!
//! Here: the run of one ordering ([`run`]); beside it `schedule.rs` (parsing and enumerating
//! orderings), `gate.rs` (where a user parks), `scheduler.rs` (one step at a time),
//! `summary.rs` (what the orderings came to).

mod gate;
pub mod schedule;
mod scheduler;
mod summary;

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

use gate::{Event, Gate};
pub use schedule::{Entry, user_name};
use scheduler::{Scheduler, State};
pub use summary::{RunResult, Summary, Transcript, describe};

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
