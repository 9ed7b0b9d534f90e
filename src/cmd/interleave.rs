//! `interleave`: the front door of [`crate::interleave`] — every ordering (or one) of two or
//! three users' steps, on the reference slot, through the same strategies `book` runs.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::InterleaveArgs;
use crate::config::Connection;
use crate::db;
use crate::error::InputError;
use crate::exit::{Exit, surface_booking};
use crate::interleave::{self, Entry, Run, Setup, Summary, Transcript, schedule};
use crate::lock::LockPolicy;
use crate::report::{self, text::interleave as out};
use crate::run::StressConfig;
use crate::strategy::{self, Mode, RetryPolicy};

use super::{connect_lock, connect_redlock, connected, finish_output, stop_on_ctrl_c};

/// What each strategy runs: every ordering, or the one schedule given.
struct Plan {
    mode: Mode,
    orderings: Vec<Vec<Entry>>,
    given: bool,
}

/// Checks the flags and lists the orderings before anything connects: a bad schedule, or a
/// strategy with too many orderings, writes nothing.
fn plans(args: &InterleaveArgs) -> Result<Vec<Plan>, InputError> {
    let users = args.users as usize;
    let modes = args.mode.modes();
    if let Some(text) = &args.schedule {
        let [mode] = modes[..] else {
            return Err(InputError::Invalid(
                "--schedule needs one strategy (--mode naive, …), not --mode all".to_owned(),
            ));
        };
        let entries = schedule::parse(text, mode, users)?;
        return Ok(vec![Plan {
            mode,
            orderings: vec![entries],
            given: true,
        }]);
    }
    modes
        .into_iter()
        .map(|mode| {
            let count = schedule::count(users, mode.steps().len()).unwrap_or(u64::MAX);
            if count > args.max_orderings {
                return Err(InputError::Invalid(format!(
                    "--mode {mode} with --users {users} has {count} orderings, more than --max-orderings {}: use --users 2, give one --schedule, or raise --max-orderings",
                    args.max_orderings
                )));
            }
            Ok(Plan {
                mode,
                orderings: schedule::all(mode, users),
                given: false,
            })
        })
        .collect()
}

pub async fn run(connection: &Connection, args: &InterleaveArgs) -> anyhow::Result<Exit> {
    let plans = plans(args)?;
    super::check_writable("--report", args.report.as_deref())?;
    let reference = StressConfig::reference(Mode::Naive);
    let users = args.users as usize;
    // An application name of its own: how the scheduler finds this run's lock waits in
    // pg_stat_activity, and nobody else's.
    let name = format!(
        "booking-cli interleave {}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let options = connection.database.clone().application_name(&name);
    // A connection per user, one to watch and read, one spare for a rollback in flight.
    let repo = connected(
        connection,
        db::repo(options, args.users + 2, connection.db_timeout),
    )
    .await?;
    repo.ensure_bookable(reference.room, &reference.stay)
        .await
        .map_err(surface_booking)?;
    let lock = connect_lock(connection, plans.iter().any(|p| p.mode.needs_redis())).await?;
    let redlock = connect_redlock(connection, plans.iter().any(|p| p.mode.needs_redlock())).await?;
    let stop = stop_on_ctrl_c(false);
    let total: usize = plans.iter().map(|p| p.orderings.len()).sum();
    let progress = progress_bar(total as u64, args.json);

    let mut summaries = Vec::with_capacity(plans.len());
    for plan in &plans {
        let strategy = strategy::build(
            plan.mode,
            strategy::Context {
                repo: repo.clone(),
                lock: lock.clone(),
                redlock: redlock.clone(),
                tuning: strategy::Tuning {
                    lock_policy: waiting_policy(connection.db_timeout),
                    // A retry runs after the schedule, alone: a short pause is enough.
                    retry: RetryPolicy {
                        retries: 20,
                        backoff: crate::backoff::Backoff {
                            base: Duration::from_millis(1),
                            cap: Duration::from_millis(16),
                        },
                    },
                    // Every payment succeeds: the order of the steps makes the race.
                    payments: strategy::Payments::default(),
                    // The order of the steps makes the race, not a hold.
                    hold: Duration::ZERO,
                },
                stop: stop.clone(),
            },
        )?;
        let setup = Setup {
            mode: plan.mode,
            strategy,
            repo: repo.clone(),
            users,
            room: reference.room,
            stay: reference.stay,
            inventory: reference.inventory,
            deadline: connection.db_timeout,
        };
        progress.set_message(plan.mode.to_string());
        let mut runs: Vec<Run> = Vec::with_capacity(plan.orderings.len());
        for ordering in &plan.orderings {
            if stop.is_stopped() {
                progress.finish_and_clear();
                eprintln!("interrupted: {} orderings of {} run", runs.len(), plan.mode);
                return Ok(Exit::Interrupted);
            }
            let run = interleave::run(&setup, ordering, plan.given)
                .await
                .with_context(|| {
                    format!(
                        "interleave --mode {} failed in ordering {}",
                        plan.mode,
                        schedule::display(ordering)
                    )
                })?;
            runs.push(run);
            progress.inc(1);
        }
        let transcript = if plan.given {
            runs.first().map(Transcript::of)
        } else {
            // Shown: the first ordering that overbooked, else the first in which a step
            // blocked — run again with the slot read after every step. The run is
            // deterministic, and the database ends in that ordering's state.
            let shown = runs
                .iter()
                .find(|r| r.overbooked())
                .or_else(|| runs.iter().find(|r| !r.blocked_steps.is_empty()));
            match shown {
                Some(shown) => Some(Transcript::of(
                    &interleave::run(&setup, &shown.schedule, true).await?,
                )),
                None => None,
            }
        };
        summaries.push(Summary::new(plan.mode, users, &runs, transcript));
    }
    progress.finish_and_clear();
    repo.close().await;

    let slot = format!(
        "room {}, night {}, inventory {}",
        reference.room,
        reference.stay.from(),
        reference.inventory
    );
    let mut stdout = std::io::stdout().lock();
    let written = match (&summaries[..], args.json) {
        ([one], true) => report::write_json(&mut stdout, one),
        (all, true) => report::write_json(&mut stdout, &all),
        ([one], false) => out::write_summary(&mut stdout, one, &slot),
        (all, false) => out::write_matrix(&mut stdout, all, &slot),
    };
    finish_output(written.and_then(|()| stdout.flush()))?;
    if let Some(path) = &args.report {
        let write = || -> std::io::Result<()> {
            let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
            report::html::write_interleave_html(&mut file, &summaries, &slot)?;
            file.flush()
        };
        write().with_context(|| format!("failed to write --report {}", path.display()))?;
    }
    Ok(if summaries.iter().all(|s| s.met) {
        Exit::Success
    } else {
        Exit::Unexpected
    })
}

/// The lock policy of an interleaving: a waiter waits as long as any step may (the scheduler
/// tells it when to try again), and a lock lives longer than any schedule, so that what the
/// run shows is the order of the steps, never a TTL or a retry budget running out.
fn waiting_policy(deadline: Duration) -> LockPolicy {
    LockPolicy {
        ttl: deadline.saturating_mul(2),
        retries: 0,
        retry_delay: Duration::from_millis(1),
        wait: Some(deadline),
        renew: false,
        replicas: 0,
    }
}

fn progress_bar(orderings: u64, quiet: bool) -> ProgressBar {
    if quiet || orderings < 2 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(orderings);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {msg:<12} {pos}/{len} orderings {wide_bar} {elapsed}",
    ) {
        bar.set_style(style);
    }
    bar
}
