//! `race`: a burst at someone else's endpoint, judged by their own database.
//!
//! Everything that can be refused is refused before a request is sent: the settings, the
//! output files, the check database (reached, and every check tried once, read-only). Then,
//! for each run: `--setup`, the count before, every connection opened, the burst released by
//! one barrier, and the checks and the count read back.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context as _;
use indicatif::ProgressBar;

use crate::check_db::{CheckDb, CheckDbError};
use crate::cli::RaceArgs;
use crate::exit::Exit;

use crate::error::InputError;
use crate::race::RaceSettings;
use crate::race::judge::{self, RaceRun};
use crate::report;
use crate::run::{self, Burst, Target};
use crate::sync::Sync;
use crate::targets::EndpointTarget;

use super::finish_output;
use crate::stop::Stop;

pub async fn run(args: &RaceArgs, verbose: u8) -> anyhow::Result<Exit> {
    let mut settings = RaceSettings::from_args(args, verbose)?;
    if settings.sync == Sync::SinglePacket {
        settings.sync = single_packet_or_fallback(&settings).await?;
    }
    let settings = Arc::new(settings);
    let secrets = settings.secrets.clone();
    let scrub = |error: anyhow::Error| -> anyhow::Error {
        // Messages of the service's database or connection errors may carry a secret.
        let line = crate::exit::error_line(&error, &secrets);
        if error.chain().any(|cause| cause.is::<InputError>()) {
            anyhow::Error::new(InputError::Invalid(line))
        } else {
            anyhow::anyhow!(line)
        }
    };
    // An output that cannot be written is said before anything is sent.
    let junit = args
        .junit
        .as_ref()
        .map(|path| {
            std::fs::File::create(path).map_err(|e| {
                InputError::Invalid(format!("--junit {}: cannot write it: {e}", path.display()))
            })
        })
        .transpose()?;
    let db = match &settings.check_db {
        Some(url) => Some(
            CheckDb::connect(url, settings.check_timeout)
                .await
                .map_err(check_db_error)
                .map_err(scrub)?,
        ),
        None => None,
    };
    let stop = stop_on_signals();
    let result = races(&settings, db.as_ref(), &stop).await.map_err(scrub);
    if let Some(db) = &db {
        db.close().await;
    }
    let runs = result?;
    let interrupted = stop.is_stopped();

    let race = judge::Race {
        settings: &settings,
        runs: &runs,
        interrupted,
    };
    let mut out = std::io::stdout().lock();
    let printed = if args.json {
        report::write_json(&mut out, &report::json::RaceJson::new(&race))
    } else if args.markdown {
        report::markdown::write_race(&mut out, &race)
    } else {
        report::text::race::write(&mut out, &race)
    };
    finish_output(printed.and_then(|()| out.flush()))?;
    if let Some(file) = junit {
        let mut file = std::io::BufWriter::new(file);
        report::junit::write_race(&mut file, &race)
            .and_then(|()| file.flush())
            .context("failed to write --junit")?;
    }
    Ok(if interrupted {
        Exit::Interrupted
    } else if judge::met(&runs, &settings) {
        Exit::Success
    } else {
        Exit::Unexpected
    })
}

/// Ctrl-C or SIGTERM (a CI job cancelled, a `timeout` that ran out) stops the race: no run
/// starts after it, the run in progress is finished on the wire but not judged. A second
/// signal quits at once.
fn stop_on_signals() -> Stop {
    let stop = Stop::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    term.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        let mut terminate = std::pin::pin!(terminate);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = &mut terminate => {}
        }
        eprintln!(
            "interrupted: no new run starts; the run in progress is not judged (again to quit now)"
        );
        signal.stop();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = &mut terminate => {}
        }
        std::process::exit(Exit::Interrupted as i32);
    });
    stop
}

/// Single-packet where every server of the burst speaks HTTP/2
/// ([`crate::sync::settle_single_packet`]); under `auto`, one that does not makes the whole
/// burst last-byte (one release, one mode).
async fn single_packet_or_fallback(settings: &RaceSettings) -> anyhow::Result<Sync> {
    let tls = settings.tls.as_ref().map(|t| &t.h2);
    let mut origins: Vec<&crate::sync::delivery::Origin> = Vec::new();
    for request in &settings.requests {
        if !origins.contains(&&request.template.url.origin) {
            origins.push(&request.template.url.origin);
        }
    }
    for origin in origins {
        let (sync, note) =
            crate::sync::settle_single_packet(origin, tls, settings.timeout, settings.sync_asked)
                .await
                .map_err(crate::sync::SettleError::surface)?;
        if let Some(note) = note {
            eprintln!("{note}");
        }
        if sync != Sync::SinglePacket {
            return Ok(sync);
        }
    }
    Ok(Sync::SinglePacket)
}

/// Every run: setup, count before, connections, burst, judgement.
async fn races(
    settings: &Arc<RaceSettings>,
    db: Option<&CheckDb>,
    stop: &Stop,
) -> anyhow::Result<Vec<RaceRun>> {
    if let Some(db) = db {
        // A dry run first, rolled back: a bad query is found with nothing sent or written.
        judge::try_checks(db, settings)
            .await
            .map_err(check_db_error)?;
    }
    let progress = progress(settings);
    let mut runs = Vec::with_capacity(settings.repeat as usize);
    for run in 1..=settings.repeat {
        if stop.is_stopped() {
            break;
        }
        back_to_start(db, settings).await?;
        // The baseline first: the same requests one by one, then back to the same start.
        let baseline = match settings.baseline {
            Some(_) => {
                let one_by_one = EndpointTarget::new(Arc::clone(settings), run)
                    .one_by_one()
                    .await
                    .with_context(|| {
                        format!("run {run}: the sequence (--baseline) was not sent")
                    })?;
                back_to_start(db, settings).await?;
                Some(one_by_one)
            }
            None => None,
        };
        let before = judge::count_before(db, settings)
            .await
            .map_err(check_db_error)?;
        let target = Arc::new(EndpointTarget::new(Arc::clone(settings), run));
        target
            .warm_up(settings.burst_size())
            .await
            .with_context(|| format!("run {run}: the burst was not sent"))?;
        // The state through the service's API, before the burst: `$before`.
        let api_before = read_states(&target, settings)
            .await
            .with_context(|| format!("run {run}: before the burst"))?;
        let reader = Arc::clone(&target);
        let burst = Burst {
            users: settings.burst_size(),
            first_user: 0,
            record: false,
        };
        let race = run::race(
            target,
            burst,
            std::future::ready(()),
            stop,
            &ProgressBar::hidden(),
        )
        .await;
        progress.inc(1);
        if stop.is_stopped() {
            // Interrupted during the burst: some users may not have sent, so the run is not
            // what was asked for; judging it would say something it did not test.
            break;
        }
        let api_after = read_states(&reader, settings)
            .await
            .with_context(|| format!("run {run}: after the burst"))?;
        let api: Vec<judge::ApiState> = api_before
            .into_iter()
            .zip(api_after)
            .map(|(before, after)| judge::ApiState { before, after })
            .collect();
        let judged = judge::judge(db, settings, run, race, before, baseline, &api)
            .await
            .map_err(check_db_error)
            .with_context(|| format!("run {run}: the invariant could not be read"))?;
        runs.push(judged);
    }
    progress.finish_and_clear();
    Ok(runs)
}

/// `--setup` on the check database, then every `--setup-cmd`: the start every run (and, with
/// a baseline, every sequence) begins from.
async fn back_to_start(db: Option<&CheckDb>, settings: &RaceSettings) -> anyhow::Result<()> {
    if let Some(db) = db {
        db.setup(&settings.setup).await.map_err(check_db_error)?;
    }
    crate::race::setup_cmd::run_all(&settings.setup_cmds, settings.check_timeout).await?;
    Ok(())
}

/// Every `--check-url`'s body, read now.
async fn read_states(
    target: &EndpointTarget,
    settings: &RaceSettings,
) -> Result<Vec<Vec<u8>>, crate::error::BookingError> {
    let mut states = Vec::with_capacity(settings.api_checks.len());
    for check in &settings.api_checks {
        states.push(target.read_state(check).await?);
    }
    Ok(states)
}

/// A bar over the runs of `--repeat`, on a terminal only.
fn progress(settings: &RaceSettings) -> ProgressBar {
    if settings.repeat < 2 || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(u64::from(settings.repeat));
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} race {pos}/{len} runs {wide_bar} {elapsed}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Bad input stays bad input (exit 2) at the top of the chain.
fn check_db_error(error: CheckDbError) -> anyhow::Error {
    match error {
        CheckDbError::Input(input) => anyhow::Error::new(input),
        other => anyhow::Error::new(other),
    }
}
