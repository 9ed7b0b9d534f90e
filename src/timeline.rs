//! What each user did, and when: the phases of every booking of a race, measured at the step
//! boundaries the strategies mark (the very boundaries `interleave` pauses at), never
//! estimated. `stress --timeline` draws them as lanes in the terminal; `--trace` writes them as
//! Chrome Trace Event JSON (Perfetto, chrome://tracing); `--report` draws them in HTML.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::{Outcome, UserId};
use crate::error::BookingError;
use crate::steps::Watcher;

/// Records the instant of every boundary of one booking, and never pauses it.
#[derive(Debug, Default)]
pub struct Marks(Mutex<Vec<(Instant, &'static str)>>);

impl Marks {
    fn push(&self, phase: &'static str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((Instant::now(), phase));
    }

    fn take(&self) -> Vec<(Instant, &'static str)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[async_trait]
impl Watcher for Marks {
    async fn before(&self, step: &'static str) {
        self.push(phase_of(step));
    }

    async fn waiting(&self, _what: String) -> bool {
        self.push(phase_of("wait"));
        // Only noted: the booking waits its own way (a release notification, a backoff).
        false
    }

    fn aborted(&self, _reason: String) {
        self.push("retry");
    }

    fn mark(&self, phase: &'static str) {
        self.push(phase_of(phase));
    }
}

/// The phase a step boundary starts. Strategies name their steps after what they do; the
/// timeline folds them into a few phases with a glyph each.
fn phase_of(step: &'static str) -> &'static str {
    match step {
        "lock" | "lock-rows" | "claim" | "wait" => "lock",
        "check" => "check",
        "work" | "pay" => "work",
        "write" | "update" | "insert" | "hold" | "book" => "write",
        "commit" | "confirm" | "unlock" => "commit",
        other => other,
    }
}

/// One phase of one booking, in microseconds from the start of the race.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub start_us: u64,
    pub end_us: u64,
}

/// One user's booking, phase by phase.
#[derive(Debug, Clone, Serialize)]
pub struct Track {
    pub user: UserId,
    /// The outcome's name (`created`, `sold_out`, …, `error`).
    pub outcome: &'static str,
    pub status: u16,
    pub start_us: u64,
    pub end_us: u64,
    /// From the start to the end, back to back: the first phase starts at `start_us` (what
    /// happens before the first boundary — taking a connection, `BEGIN` — is `begin`), the last
    /// ends at `end_us`. Their durations add up to the user's latency.
    pub phases: Vec<Phase>,
}

/// Turns one booking's marks into a track. `origin` is the start of the race.
pub fn track(
    user: UserId,
    marks: &Marks,
    started: Instant,
    finished: Instant,
    origin: Instant,
    result: &Result<Outcome, BookingError>,
) -> Track {
    let us = |t: Instant| {
        u64::try_from(t.saturating_duration_since(origin).as_micros()).unwrap_or(u64::MAX)
    };
    let mut phases = Vec::new();
    let mut current = ("begin", started);
    for (at, phase) in marks.take() {
        let at = at.clamp(started, finished);
        if phase == current.0 {
            continue;
        }
        phases.push(Phase {
            name: current.0,
            start_us: us(current.1),
            end_us: us(at),
        });
        current = (phase, at);
    }
    phases.push(Phase {
        name: current.0,
        start_us: us(current.1),
        end_us: us(finished),
    });
    // A boundary at the very start leaves an empty `begin`: nothing happened before it.
    phases.retain(|p| p.end_us > p.start_us || p.name != "begin");
    let (outcome, status) = match result {
        Ok(outcome) => (outcome.kind(), outcome.status()),
        Err(_) => ("error", 500),
    };
    Track {
        user,
        outcome,
        status,
        start_us: us(started),
        end_us: us(finished),
        phases,
    }
}

/// The glyph of a phase in the terminal timeline.
pub fn glyph(phase: &str) -> char {
    match phase {
        "begin" => '.',
        "lock" => 'L',
        "check" => 'c',
        "work" => '~',
        "write" => 'w',
        "commit" => 'C',
        "retry" => 'r',
        "request" => '>',
        "response" => '<',
        _ => '?',
    }
}

/// When each booking that was created ended (microseconds), in order.
fn created_ends(tracks: &[Track]) -> Vec<u64> {
    let mut ends: Vec<u64> = tracks
        .iter()
        .filter(|t| t.outcome == "created")
        .map(|t| t.end_us)
        .collect();
    ends.sort_unstable();
    ends
}

/// When the slot became overbooked: the end of the commit of the first booking created beyond
/// the inventory (bookings ordered by when they ended), if any.
pub fn overbooked_at(tracks: &[Track], inventory: i32) -> Option<u64> {
    created_ends(tracks)
        .get(usize::try_from(inventory).unwrap_or(0))
        .copied()
}

/// Where the race's bookings ended, as (microseconds, bookings created so far): the counter
/// track of a trace.
pub fn created_over_time(tracks: &[Track]) -> Vec<(u64, u64)> {
    created_ends(tracks)
        .into_iter()
        .enumerate()
        .map(|(i, at)| (at, i as u64 + 1))
        .collect()
}

/// The span of a race: from its first start to its last end.
pub fn span(tracks: &[Track]) -> Duration {
    let end = tracks.iter().map(|t| t.end_us).max().unwrap_or(0);
    Duration::from_micros(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_run_back_to_back_from_start_to_end() {
        let marks = Marks::default();
        let origin = Instant::now();
        let started = origin + Duration::from_millis(1);
        {
            let mut m = marks.0.lock().unwrap();
            m.push((started + Duration::from_millis(2), "check"));
            m.push((started + Duration::from_millis(3), "work"));
            m.push((started + Duration::from_millis(10), "write"));
            m.push((started + Duration::from_millis(11), "commit"));
        }
        let finished = started + Duration::from_millis(12);
        let t = track(
            UserId::random(),
            &marks,
            started,
            finished,
            origin,
            &Ok(Outcome::Created { booking_id: 1 }),
        );
        let names: Vec<&str> = t.phases.iter().map(|p| p.name).collect();
        assert_eq!(names, ["begin", "check", "work", "write", "commit"]);
        let total: u64 = t.phases.iter().map(|p| p.end_us - p.start_us).sum();
        assert_eq!(total, t.end_us - t.start_us);
        assert_eq!(t.phases[0].start_us, 1_000);
    }
}
