//! The invariant a run is judged by, and its verdicts — one definition for `stress`,
//! `interleave` and `race`.
//!
//! An invariant has two kinds:
//! - **booking-cli's schema** ([`of_nights`]): every night's `booked_count` against its
//!   `total_inventory` and against the rows that hold its rooms;
//! - **a user's SQL** (`race --check`, `--max-successes`, `--count`): every row a check returns
//!   is a violation, read from the service's own database.
//!
//! Both end with the same accounting rule ([`accounted`]): every success the target
//! acknowledged must be found written, and every write must have been acknowledged — or the
//! verdict is [`Verdict::Unaccounted`], never a green.
//!
//! *Overbooked* means one thing everywhere: a night sold more rooms than it has, by its
//! counter or by its rows. A counter that disagrees with the rows is a *lost update*, its own
//! verdict. A run "reproduces the race" ([`Expectation::Overbooking`]) when either shows.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::repo::NightState;
use crate::strategy::Expectation;

/// An invariant the final state breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// A night has `booked_count > total_inventory`, or more rows holding a room than rooms.
    Overbooked,
    /// A night's rows ≠ its `booked_count`: increments were lost (counter drift).
    LostUpdate,
    /// A user was refused although every night of their stay still had a room at the end.
    UnderSold,
    /// A hold (`reserve`) was confirmed after its expiry, when its room may have been reclaimed
    /// and sold to someone else.
    ConfirmedAfterExpiry,
    /// The successes the target acknowledged and what the database holds disagree: more
    /// acknowledged than written is a lost (or phantom) write — or a database that is not the
    /// one the target writes; fewer is a write the client was never told of.
    Unaccounted,
    /// A user's check returned rows, or more successes were acknowledged than
    /// `--max-successes` allows (`race`).
    Violated,
    /// Nothing broke, but fewer requests succeeded than `--min-successes` (`race`): a burst in
    /// which nobody got through (a login that broke, a CSRF token missing, every request a 5xx)
    /// tested nothing, and is never `HELD`.
    Untested,
}

/// Which kind of invariant judged a run: it names the verdict of a run that broke nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// booking-cli's schema: `SAFE`.
    Schema,
    /// The user's SQL: `HELD`.
    Sql,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Overbooked => "OVERBOOKED",
            Verdict::LostUpdate => "LOST_UPDATE",
            Verdict::UnderSold => "UNDER_SOLD",
            Verdict::ConfirmedAfterExpiry => "CONFIRMED_AFTER_EXPIRY",
            Verdict::Unaccounted => "UNACCOUNTED",
            Verdict::Violated => "VIOLATED",
            Verdict::Untested => "UNTESTED",
        }
    }

    /// Whether the verdict is the anomaly a race is run to reproduce: more sold than there
    /// is, by the counter, the rows or the user's checks.
    pub fn is_anomaly(self) -> bool {
        matches!(
            self,
            Verdict::Overbooked | Verdict::LostUpdate | Verdict::Violated
        )
    }
}

/// `SAFE` (schema) or `HELD` (SQL) when nothing is broken, else the verdicts joined by `+`
/// (e.g. `OVERBOOKED+LOST_UPDATE`).
pub fn join(verdicts: &[Verdict], kind: Kind) -> String {
    if verdicts.is_empty() {
        return match kind {
            Kind::Schema => "SAFE",
            Kind::Sql => "HELD",
        }
        .to_owned();
    }
    verdicts
        .iter()
        .map(|v| v.name())
        .collect::<Vec<_>>()
        .join("+")
}

/// What the nights' final state breaks, in a fixed order: oversold, drifted, confirmed after
/// expiry. (Under-selling needs the refused users as well, accounting the acknowledged
/// successes.)
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

/// The accounting rule: `successes` acknowledged against `written`, what the database holds
/// for the run (booking rows for booking-cli's schema, `--count` for a user's). An attempt
/// that failed without an answer (a transport error, a time-out, a 5xx) is *indeterminate*: it
/// may or may not have written, so up to `indeterminate` writes more than were acknowledged are
/// accounted for — never fewer than were acknowledged. Nothing to compare (no `--count`) is no
/// verdict.
pub fn accounted(successes: u32, indeterminate: u32, written: Option<i64>) -> Option<Verdict> {
    let written = written?;
    let (low, high) = (
        i64::from(successes),
        i64::from(successes) + i64::from(indeterminate),
    );
    (written < low || written > high).then_some(Verdict::Unaccounted)
}

/// Whether one run's verdicts show what was expected. `clean`: no user hit an error (or the
/// errors were injected on purpose), and nobody was refused while rooms were left unless the
/// strategy is known to do that — a safe run must show both, or it proves nothing.
pub fn met(expect: Expectation, verdicts: &[Verdict], clean: bool) -> bool {
    match expect {
        Expectation::Overbooking => verdicts.iter().any(|v| v.is_anomaly()),
        Expectation::Safe => verdicts.is_empty() && clean,
        Expectation::Any => true,
    }
}

/// Whether `runs` repetitions met the expectation, given whether each did on its own: safety
/// only when every run was safe, the anomaly when at least one run showed it — one
/// counterexample is the proof.
pub fn met_over_runs(expect: Expectation, runs: impl IntoIterator<Item = bool>) -> bool {
    let mut runs = runs.into_iter();
    match expect {
        Expectation::Overbooking => runs.any(|met| met),
        Expectation::Safe => runs.all(|met| met),
        Expectation::Any => true,
    }
}

/// Whether each of a group's runs counts as met in a per-run report (a JUnit case, a table
/// row), given whether each met the expectation on its own: under `Overbooking` every run is
/// met when one is — one counterexample proves the race for the whole group — while safety is
/// each run's own.
pub fn each_met(expect: Expectation, runs: &[bool]) -> Vec<bool> {
    let together = met_over_runs(expect, runs.iter().copied());
    runs.iter()
        .map(|met| match expect {
            Expectation::Overbooking => together,
            Expectation::Safe | Expectation::Any => *met,
        })
        .collect()
}

/// Verdict (as printed: `SAFE`, `HELD`, `OVERBOOKED+LOST_UPDATE`, …) → in how many runs it was
/// given.
pub fn counts(verdicts: impl IntoIterator<Item = String>) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for verdict in verdicts {
        *counts.entry(verdict).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_without_its_write_and_a_write_without_its_success_are_both_unaccounted() {
        assert_eq!(accounted(4, 0, Some(0)), Some(Verdict::Unaccounted));
        assert_eq!(accounted(0, 0, Some(3)), Some(Verdict::Unaccounted));
        assert_eq!(accounted(2, 0, Some(2)), None);
        assert_eq!(
            accounted(2, 0, None),
            None,
            "nothing counted, nothing to compare"
        );
        // A failed attempt may have written (its answer was lost), never un-written a success.
        assert_eq!(accounted(2, 1, Some(3)), None);
        assert_eq!(accounted(2, 1, Some(4)), Some(Verdict::Unaccounted));
        assert_eq!(accounted(2, 5, Some(1)), Some(Verdict::Unaccounted));
    }

    #[test]
    fn one_counterexample_proves_the_race_but_safety_needs_every_run() {
        assert!(met_over_runs(
            Expectation::Overbooking,
            [false, true, false]
        ));
        assert!(!met_over_runs(Expectation::Overbooking, [false, false]));
        assert!(!met_over_runs(Expectation::Safe, [true, false, true]));
        assert!(met_over_runs(Expectation::Safe, [true, true]));
    }

    #[test]
    fn in_a_per_run_report_one_counterexample_meets_every_run_of_its_group() {
        assert_eq!(
            each_met(Expectation::Overbooking, &[false, true]),
            [true, true]
        );
        assert_eq!(each_met(Expectation::Safe, &[true, false]), [true, false]);
        assert_eq!(
            counts([
                "SAFE".to_owned(),
                "SAFE".to_owned(),
                "OVERBOOKED".to_owned()
            ])["SAFE"],
            2
        );
    }

    #[test]
    fn unaccounted_is_never_safe_and_never_the_race_reproduced() {
        let verdicts = [Verdict::Unaccounted];
        assert!(!met(Expectation::Safe, &verdicts, true));
        assert!(!met(Expectation::Overbooking, &verdicts, true));
        assert_eq!(join(&verdicts, Kind::Schema), "UNACCOUNTED");
        assert_eq!(join(&[], Kind::Sql), "HELD");
        assert_eq!(join(&[], Kind::Schema), "SAFE");
    }
}
