//! One module per command, as `main` dispatches them through the dispatcher (`app.rs`): each builds
//! what it needs from the validated settings and calls the core (the strategies, the
//! repository, the stress runner). What several commands share — connecting to the servers with
//! errors that name them, Ctrl-C, writing to stdout — is here.

pub mod bench;
pub mod book;
pub mod docs;
pub mod interleave;
pub mod race;
pub mod reset;
pub mod serve;
pub mod strategies;
pub mod stress;
pub mod worker;

use anyhow::Context as _;

use crate::config::Connection;
use crate::db::{self, DbError};
use crate::error::InputError;
use crate::exit::{Exit, surface_db};
use crate::lock::redlock::RedLock;
use crate::lock::{ConnectError, RedisLock};
use crate::repo::Repo;
use crate::stop::Stop;

/// A stop signal that the first Ctrl-C sets: no new bookings start, waiters give up, bookings
/// in flight finish and release their locks, and a partial report follows. A second Ctrl-C
/// quits at once.
pub(crate) fn stop_on_ctrl_c(announce: bool) -> Stop {
    let stop = Stop::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        if announce {
            eprintln!(
                "interrupted: no new bookings start; finishing those in flight (Ctrl-C again to quit now)"
            );
        }
        signal.stop();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(Exit::Interrupted as i32);
        }
    });
    stop
}

/// A reader that stops early (`| head`) closes the pipe: that is not an error of this tool, and
/// the exit status still reports the outcome.
/// Fails with one line when `path` (the file of `flag`) cannot be written — before the run has
/// written anything anywhere. Leaves no file behind that was not there before.
pub(crate) fn check_writable(flag: &str, path: Option<&std::path::Path>) -> Result<(), InputError> {
    let Some(path) = path else { return Ok(()) };
    let existed = path.exists();
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path);
    match opened {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(path);
            }
            Ok(())
        }
        Err(e) => Err(InputError::Invalid(format!(
            "{flag} {}: cannot write it: {e}",
            path.display()
        ))),
    }
}

pub(crate) fn finish_output(written: std::io::Result<()>) -> anyhow::Result<()> {
    match written {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other.context("failed to write to stdout")?),
    }
}

pub(crate) async fn connect_repo(
    connection: &Connection,
    max_connections: u32,
) -> anyhow::Result<Repo> {
    let options = connection.database.clone();
    connected(
        connection,
        db::repo(options, max_connections, connection.db_timeout),
    )
    .await
}

/// How many more connections PostgreSQL accepts now (asked on a connection of its own, which
/// is closed again: it is not counted).
pub(crate) async fn spare_connections(connection: &Connection) -> anyhow::Result<u32> {
    let probe = connect_repo(connection, 1).await?;
    let spare = probe
        .spare_connections()
        .await
        .context("failed to ask PostgreSQL how many connections it accepts")?;
    probe.close().await;
    Ok(spare)
}

/// Like [`connect_repo`], with a pool of `wanted` connections or of as many as PostgreSQL has
/// slots for (see [`db::sized_repo`]).
pub(crate) async fn connect_sized_repo(
    connection: &Connection,
    wanted: u32,
) -> anyhow::Result<Repo> {
    let options = connection.database.clone();
    connected(
        connection,
        db::sized_repo(options, wanted, connection.db_timeout),
    )
    .await
}

/// A repository, or the error saying which server (password masked) could not be reached.
pub(crate) async fn connected(
    connection: &Connection,
    repo: impl Future<Output = Result<Repo, DbError>>,
) -> anyhow::Result<Repo> {
    repo.await.map_err(surface_db).with_context(|| {
        format!(
            "failed to connect to DATABASE_URL {}",
            connection.database_display()
        )
    })
}

/// The lock service, when `needed`.
pub(crate) async fn connect_lock(
    connection: &Connection,
    needed: bool,
) -> anyhow::Result<Option<RedisLock>> {
    if !needed {
        return Ok(None);
    }
    connect_redis(connection).await.map(Some)
}

/// The lock service: the Redis Cluster of `--redis-cluster` when given, else the first
/// `REDIS_URL`.
pub(crate) async fn connect_redis(connection: &Connection) -> anyhow::Result<RedisLock> {
    lock_service(connection)
        .await
        .map_err(surface_connect)
        .with_context(|| format!("failed to connect to {}", connection.lock_service_display()))
}

/// Connects to the lock service [`connect_redis`] names, keeping the error's kind (`db drop`
/// reports it rather than failing).
pub(crate) async fn lock_service(connection: &Connection) -> Result<RedisLock, ConnectError> {
    let prefix = &connection.lock_key_prefix;
    if connection.redis_cluster.is_empty() {
        RedisLock::connect(&connection.redis_url, prefix).await
    } else {
        RedisLock::connect_cluster(&connection.redis_cluster, prefix).await
    }
}

/// The same lock service, connected on first use and reconnected whenever it drops (`serve`,
/// which must start whether or not it answers yet); fails only on a bad URL.
pub(crate) fn lazy_lock_service(connection: &Connection) -> Result<RedisLock, ConnectError> {
    let prefix = &connection.lock_key_prefix;
    if connection.redis_cluster.is_empty() {
        RedisLock::connect_lazy(&connection.redis_url, prefix)
    } else {
        RedisLock::connect_cluster_lazy(&connection.redis_cluster, prefix)
    }
}

/// A lock connection's error for the exit status: a bad URL stays an [`InputError`] (exit 2).
pub(crate) fn surface_connect(error: ConnectError) -> anyhow::Error {
    match error {
        ConnectError::Input(input) => anyhow::Error::new(input),
        ConnectError::Lock(lock) => anyhow::Error::new(lock),
    }
}

/// Every Redis server the run's lock strategies use: the faults of `--chaos pause-redis`.
pub(crate) fn redis_servers(lock: &Option<RedisLock>, redlock: &Option<RedLock>) -> Vec<RedisLock> {
    lock.iter()
        .cloned()
        .chain(redlock.iter().flat_map(RedLock::instances))
        .collect()
}

/// The Redlock instances, when `needed`. Instances that do not answer are tolerated here (a
/// minority may be down); without a majority, every booking fails closed.
pub(crate) async fn connect_redlock(
    connection: &Connection,
    needed: bool,
) -> anyhow::Result<Option<RedLock>> {
    if !needed {
        return Ok(None);
    }
    let redlock = RedLock::connect(&connection.redis_urls, &connection.lock_key_prefix)
        .await
        .with_context(|| {
            format!(
                "failed to set up Redlock over REDIS_URL {}",
                connection.redis_urls_display()
            )
        })?;
    Ok(Some(redlock))
}
