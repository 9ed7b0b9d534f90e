//! `serve`: the booking API over HTTP, on every strategy this process can set up.

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::cli::ServeArgs;
use crate::config::{Connection, ServeConfig};
use crate::exit::Exit;
use crate::http::{self, AppState, Setup};
use crate::lock::redlock::RedLock;
use crate::stop::Stop;

use super::connect_sized_repo;

pub async fn run(connection: &Connection, args: &ServeArgs) -> anyhow::Result<Exit> {
    let config = ServeConfig::from_args(args);
    let mode = config.settings.mode;
    // One connection per booking in flight, and two for reads (availability, health) — but
    // never more than half of what PostgreSQL has free: the server is shared (other clients,
    // other replicas), and a pool that cannot open its connections only finds out booking by
    // booking. Bookings beyond the pool wait for a connection (up to --db-timeout).
    let max = u32::try_from(config.settings.max_in_flight).unwrap_or(u32::MAX);
    let wanted = max.saturating_add(2);
    let spare = super::spare_connections(connection).await?;
    let size = wanted.min(spare.saturating_add(1) / 2).max(2);
    let repo = connect_sized_repo(connection, size).await?;
    let pooled = repo.pool_size();
    eprintln!(
        "PostgreSQL: a pool of {pooled} connection(s) (--max-in-flight {max} + 2 for reads, at most half of the {spare} the server had free)"
    );
    // Redis: connected on first use and reconnected whenever it drops, so a server started
    // while Redis is down picks it up when it comes, and one whose Redis restarts carries on.
    // Meanwhile the bookings that need it are answered 503 with Retry-After. A cluster likewise:
    // connected on first use, tried again while no node answers; once connected, its client
    // follows redirections and failovers by itself.
    let lock = super::lazy_lock_service(connection).map_err(super::surface_connect)?;
    if let Err(error) = lock.ping().await {
        eprintln!(
            "warning: {} does not answer ({error}); the lock modes answer 503 until it does",
            connection.lock_service_display()
        );
    }
    let lock = Some(lock);
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
            tuning: config.tuning,
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
