//! The lock service's connection: one instance (direct, or managed for a long-lived `serve`),
//! or a Redis Cluster (see [`super::cluster`]).

use super::*;

impl RedisLock {
    /// Connects to Redis and checks that it answers. `key_prefix` goes before every key, so that
    /// tests (or several demonstrations) can share one Redis without sharing locks.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, ConnectError> {
        let client = redis::Client::open(url).map_err(bad_url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(LockError::from)?;
        let lock = Self::over(client, Conn::Direct(conn), key_prefix);
        lock.ping().await?;
        Ok(lock)
    }

    /// Whether this handle locks on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_) | Conn::LazyCluster(_))
    }

    /// A handle that connects on first use and reconnects whenever the connection breaks:
    /// `serve`, which must pick Redis up whenever it comes (back). Fails only on a bad URL.
    pub fn connect_lazy(url: &str, key_prefix: &str) -> Result<Self, ConnectError> {
        let client = redis::Client::open(url).map_err(bad_url)?;
        // Reconnecting is quick and bounded: a booking waits for it at most a few hundred
        // milliseconds beyond the connect time-out, and then fails (503 from `serve`).
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(bad_url)?;
        Ok(Self::over(client, Conn::Managed(conn), key_prefix))
    }

    pub(super) fn over(client: redis::Client, conn: Conn, key_prefix: &str) -> Self {
        Self {
            conn,
            key_prefix: Arc::from(key_prefix),
            release: Arc::new(Script::new(RELEASE_SCRIPT)),
            extend: Arc::new(Script::new(EXTEND_SCRIPT)),
            acquire_fenced: Arc::new(Script::new(ACQUIRE_FENCED_SCRIPT)),
            raise_fence: Arc::new(Script::new(RAISE_FENCE_SCRIPT)),
            counters: Arc::default(),
            releases: Arc::new(Releases::new(client, key_prefix)),
            stop: Stop::new(),
            cluster_seeds: Arc::from(Vec::new()),
        }
    }
}

/// The connection of a [`RedisLock`].
///
/// `Managed` reconnects by itself — a command that finds the connection broken (a Redis
/// restart, `CLIENT KILL`, the server's idle `timeout`) fails, and the next ones go over a new
/// one — which a long-lived `serve` needs. It costs every command a lookup and an await of the
/// manager's current connection; a run, which lasts seconds and is judged whole (a dropped
/// connection is an error it reports), keeps `Direct`.
#[derive(Clone)]
pub(super) enum Conn {
    Direct(MultiplexedConnection),
    Managed(ConnectionManager),
    /// A Redis Cluster: commands routed by key slot, redirections and lost nodes handled by the
    /// client (see [`RedisLock::connect_cluster`]).
    Cluster(ClusterConnection),
    /// The same, connected on first use (`serve`): see [`RedisLock::connect_cluster_lazy`].
    LazyCluster(Arc<cluster::LazyCluster>),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Direct(c) => c.req_packed_command(cmd),
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::LazyCluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Direct(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::LazyCluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_commands(pipeline, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Direct(c) => c.get_db(),
            Conn::Managed(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::LazyCluster(_) => 0,
        }
    }
}

/// A `REDIS_URL` that does not parse: bad input.
pub(super) fn bad_url(e: redis::RedisError) -> ConnectError {
    ConnectError::Input(InputError::BadUrl {
        variable: "REDIS_URL",
        what: "Redis",
        reason: e.to_string(),
    })
}

/// Why [`RedisLock::connect`] failed: a URL the user must fix, or a server that did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Lock(#[from] LockError),
}
