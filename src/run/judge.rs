//! Judging a race on booking-cli's own schema: the slot prepared before, every night read back
//! after, and the verdicts of the schema invariant ([`super::verdict`]) computed from what the
//! database holds — never from what the users reported.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::plan::StressConfig;
use super::tally::{RaceResult, Tally, TargetStats};
use super::verdict::{self, Kind, Verdict};
use crate::domain::BookingRequest;
use crate::error::BookingError;
use crate::metrics::Latencies;
use crate::repo::{NightState, Repo};
use crate::timeline::Track;

/// Checks the slot (nothing is written for a bad room or night) and prepares it: inventory set,
/// counters zeroed, earlier bookings of those nights deleted. Returns how many were deleted.
pub async fn prepare(repo: &Repo, config: &StressConfig) -> Result<u64, BookingError> {
    let region = config.region()?;
    for room in config.rooms() {
        repo.ensure_bookable(room, &region).await?;
    }
    let mut cleared = 0;
    for room in config.rooms() {
        cleared += repo
            .prepare_slot(room, &region, config.inventory, config.shards)
            .await?;
    }
    Ok(cleared)
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
    /// Confirmed bookings the database holds for the slot: the run's writes, which every
    /// acknowledged success must be among.
    pub written: i64,
    /// What the target counted (locks, retries, status codes).
    pub stats: TargetStats,
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
    /// Every outcome of this process's users, as the run's own tally counts them.
    #[serde(skip)]
    pub tally: Tally,
    pub created: u32,
    pub conflicts_sold_out: u32,
    pub conflicts_lock: u32,
    pub conflicts_retries: u32,
    pub errors: u32,
    pub elapsed_ms: u128,
}

impl StressReport {
    /// A night sold more rooms than it has, by its counter or its rows.
    pub fn overbooked(&self) -> bool {
        self.nights.iter().any(NightState::oversold)
    }

    /// Every invariant the database breaks, in a fixed order; empty means SAFE.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut verdicts = verdict::of_nights(&self.nights);
        if self.under_sold > 0 {
            verdicts.push(Verdict::UnderSold);
        }
        let indeterminate = self.tally.error_count();
        verdicts.extend(verdict::accounted(
            self.tally.successes(),
            indeterminate,
            Some(self.written),
        ));
        verdicts
    }

    /// `SAFE`, or the verdicts joined by `+` (e.g. `OVERBOOKED+LOST_UPDATE`).
    pub fn verdict(&self) -> String {
        verdict::join(&self.verdicts(), Kind::Schema)
    }

    /// Why the run is `UNACCOUNTED`, in a sentence, when it is.
    pub fn unaccounted(&self) -> Option<String> {
        if !self.verdicts().contains(&Verdict::Unaccounted) {
            return None;
        }
        let (acknowledged, written) = (self.tally.successes(), self.written);
        let whose = if self.config.servers > 0 {
            "the server"
        } else {
            "the strategy"
        };
        Some(if i64::from(acknowledged) > written {
            let mut line = format!(
                "{whose} acknowledged {acknowledged} booking(s), but the database holds {written} for the slot"
            );
            if self.config.servers > 0 {
                line.push_str(": the server does not write where DATABASE_URL points");
            }
            line
        } else {
            format!(
                "the database holds {written} booking(s) for the slot, but {whose} acknowledged only {acknowledged} (and {} attempt(s) failed): writes nobody was told of",
                self.tally.error_count()
            )
        })
    }

    /// The night the one-line summary speaks of: the first broken one, else the first.
    pub fn headline_night(&self) -> Option<&NightState> {
        self.nights
            .iter()
            .find(|n| n.overbooked())
            .or_else(|| self.nights.first())
    }

    /// Whether the run showed what it was expected to. `safe` also requires that no user hit an
    /// error (unless `--chaos` caused them) — twenty failed users leave a consistent database,
    /// but prove nothing — and that nobody was refused while rooms were left, unless the
    /// strategy is known to do that ([`StressConfig::under_selling_expected`]).
    pub fn expectation_met(&self) -> bool {
        let mut verdicts = self.verdicts();
        // The known under-selling of fixed retries (users refused while a lock or a hold was
        // changing hands) is tolerated; holds that expired before their payment ended are not:
        // that is a hold too short for the payment, and it sells nothing.
        if self.config.under_selling_expected() && self.tally.count("hold_expired") == 0 {
            verdicts.retain(|v| *v != Verdict::UnderSold);
        }
        // Under --chaos, errors are the injected fault; the invariants must still hold.
        let clean = self.tally.error_count() == 0 || !self.config.chaos.is_empty();
        verdict::met(self.config.expect, &verdicts, clean)
    }

    /// Why the run sold less than it could, in a few words for the verdict line — when it did
    /// and the reason is known.
    pub fn shortfall(&self) -> Option<String> {
        if self.under_sold == 0 {
            return None;
        }
        let expired = self.tally.count("hold_expired");
        if expired > 0 {
            let confirmed_or_failed = self.tally.successes() + self.tally.count("payment_failed");
            let which = if confirmed_or_failed == 0 {
                "every hold expired before its payment ended".to_owned()
            } else {
                format!("{expired} hold(s) expired before their payment ended")
            };
            return Some(format!(
                "{which}: --hold-ttl-ms {} is shorter than the payment's --hold-ms {}",
                self.config.payments.hold_ttl.as_millis(),
                self.config.hold.as_millis()
            ));
        }
        (self.tally.successes() == 0).then(|| "nothing was sold while rooms were free".to_owned())
    }

    /// Bookings created per second of the run.
    pub fn bookings_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            f64::from(self.tally.successes()) / secs
        } else {
            0.0
        }
    }
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
    let mut written = 0;
    for room in config.rooms() {
        let read = async {
            let state = repo.slot_state(room, &region).await?;
            let rows = repo.confirmed_bookings(room, &region).await?;
            Ok::<_, sqlx::Error>((state, rows))
        };
        match read.await {
            Ok((state, rows)) => {
                nights.extend(state);
                written += rows;
            }
            // No verdict without the database: say what the users reported, and why there is
            // nothing to judge it by.
            Err(error) => {
                return Err(BookingError::Unjudged {
                    tally: race.tally.line(config.users),
                    source: error,
                });
            }
        }
    }
    Ok(StressReport {
        config: config.clone(),
        under_sold: count_under_sold(&race.refused, &nights),
        written,
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

/// Whether each report met its expectation, with the runs of `--repeat` (consecutive groups of
/// `repeat`) judged together ([`verdict::each_met`]): a run that did not reproduce the race is
/// no failure when another run of its strategy did, while every run must be safe.
pub fn runs_met(reports: &[StressReport], repeat: u32) -> Vec<bool> {
    reports
        .chunks(repeat.max(1) as usize)
        .flat_map(|group| {
            let expect = group
                .first()
                .map_or(crate::strategy::Expectation::Any, |r| r.config.expect);
            let each: Vec<bool> = group.iter().map(StressReport::expectation_met).collect();
            verdict::each_met(expect, &each)
        })
        .collect()
}

/// How often each verdict occurred over the runs of one strategy (`SAFE` for none).
pub fn verdict_counts(runs: &[StressReport]) -> BTreeMap<String, u32> {
    verdict::counts(runs.iter().map(StressReport::verdict))
}
