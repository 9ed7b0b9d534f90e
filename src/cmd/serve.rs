//! `serve`: the booking API over HTTP, on every strategy this process can set up.

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::app::Exit;
use crate::cli::ServeArgs;
use crate::config::{Connection, ServeConfig};
use crate::http::{self, AppState, Setup};
use crate::lock::RedisLock;
use crate::lock::redlock::RedLock;
use crate::stop::Stop;

use super::{connect_redis, connect_repo};

pub async fn run(connection: &Connection, args: &ServeArgs) -> anyhow::Result<Exit> {
    let config = ServeConfig::from_args(args);
    let mode = config.settings.mode;
    // One connection per booking in flight, and two for reads (availability, health).
    let max = u32::try_from(config.settings.max_in_flight).unwrap_or(u32::MAX);
    let repo = connect_repo(connection, max.saturating_add(2)).await?;
    // Redis: required by the default mode; for the others, a request that needs it and cannot
    // have it gets a 503 that says why.
    let lock = if mode.needs_redis() {
        Some(connect_redis(connection).await?)
    } else {
        match RedisLock::connect(&connection.redis_url, &connection.lock_key_prefix).await {
            Ok(lock) => Some(lock),
            Err(error) => {
                tracing::warn!(%error, "no Redis: the lock strategies will answer 503");
                None
            }
        }
    };
    let redlock = RedLock::connect(&connection.redis_urls, &connection.lock_key_prefix)
        .await
        .context("failed to set up Redlock over REDIS_URL")?;
    // An address in use is the environment's problem, not the input's: exit 1.
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on --listen {}", config.listen))?;
    let address = listener.local_addr().unwrap_or(config.listen);
    let stop = Stop::new();
    let state = AppState::new(
        Setup {
            repo: repo.clone(),
            lock,
            redlock: Some(redlock),
            hold: config.hold,
            lock_policy: config.lock_policy,
            retry: config.retry,
            payments: config.payments,
            stop: stop.clone(),
        },
        config.settings,
    );
    eprintln!(
        "serving the booking API on http://{address} (--mode {mode}); Ctrl-C or SIGTERM stops it"
    );
    let drained = http::serve(listener, state, stop, shutdown_signal())
        .await
        .context("the server failed")?;
    repo.close().await;
    if !drained {
        anyhow::bail!("bookings were still running after the drain deadline (--drain)");
    }
    eprintln!("stopped: every booking in flight finished");
    Ok(Exit::Success)
}

/// Resolves on Ctrl-C or SIGTERM (what `kill`, systemd and container runtimes send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
