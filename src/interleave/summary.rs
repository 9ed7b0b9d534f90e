//! What a run of `interleave` came to: each ordering's outcome and the slot's final state,
//! and the verdicts over every ordering.

use super::*;

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
        Outcome::Acknowledged => "accepted".to_owned(),
        Outcome::Declined => "rejected".to_owned(),
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
