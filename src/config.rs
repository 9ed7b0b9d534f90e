//! Validated settings, built from the command line before any work starts.
//!
//! clap has already parsed every single value into a domain type; what is checked here is what
//! depends on several flags (`--from` with `--nights` or `--to`) or must be parsed without ever
//! being echoed (URLs that may hold a password).

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::backoff::Backoff;
use crate::cli::{BookArgs, ConnectionArgs, LockArgs, RetryArgs, StressArgs, WorkArgs};
use crate::db;
use crate::domain::{BookingRequest, Stay};
use crate::error::InputError;
use crate::lock::LockPolicy;
use crate::run::StressConfig;
use crate::strategy::{Expectation, Mode, Payments, RetryPolicy, Shows, Tuning};
use crate::sync::Sync;
use crate::sync::delivery::Origin;
use crate::sync::tls::Tls;

/// Where the servers are.
#[derive(Debug, Clone)]
pub struct Connection {
    pub database: PgConnectOptions,
    /// The raw URL, for `db reset` (sqlx's create-database helpers take a URL). Never print it.
    pub database_url: String,
    /// The raw Redis URL (the first one given). Never print it: use [`mask_url`].
    pub redis_url: String,
    /// Every Redis URL given, for Redlock.
    pub redis_urls: Vec<String>,
    /// `--redis-cluster`: seed nodes of a Redis Cluster the lock uses instead of `redis_url`.
    pub redis_cluster: Vec<String>,
    pub lock_key_prefix: String,
    /// The client-side deadline of every PostgreSQL call (`--db-timeout`).
    pub db_timeout: Duration,
}

impl Connection {
    pub fn from_args(args: &ConnectionArgs) -> Result<Self, InputError> {
        Ok(Self {
            database: db::connect_options(&args.database_url, args.db_timeout)?,
            database_url: args.database_url.clone(),
            redis_url: args
                .redis_url
                .first()
                .cloned()
                .unwrap_or_else(|| crate::cli::DEFAULT_REDIS_URL.to_owned()),
            redis_urls: args.redis_url.clone(),
            redis_cluster: args.redis_cluster.clone(),
            lock_key_prefix: key_prefix(&args.lock_key_prefix)?,
            db_timeout: args.db_timeout,
        })
    }

    /// `DATABASE_URL` with its password masked, for messages.
    pub fn database_display(&self) -> String {
        mask_url(&self.database_url)
    }

    /// `REDIS_URL` with its password masked, for messages.
    pub fn redis_display(&self) -> String {
        mask_url(&self.redis_url)
    }

    /// Every Redis URL, masked, comma-separated.
    pub fn redis_urls_display(&self) -> String {
        masked_list(&self.redis_urls)
    }

    /// The cluster's seed nodes, masked, comma-separated.
    pub fn redis_cluster_display(&self) -> String {
        masked_list(&self.redis_cluster)
    }

    /// The lock service, masked, for messages: `REDIS_URL …`, or the cluster's seeds.
    pub fn lock_service_display(&self) -> String {
        if self.redis_cluster.is_empty() {
            format!("REDIS_URL {}", self.redis_display())
        } else {
            format!(
                "the Redis Cluster at --redis-cluster {}",
                self.redis_cluster_display()
            )
        }
    }

    /// Every secret that must never appear in output: the passwords of every URL.
    pub fn secrets(&self) -> Vec<String> {
        std::iter::once(&self.database_url)
            .chain(&self.redis_urls)
            .chain(&self.redis_cluster)
            .filter_map(|u| url::Url::parse(u).ok())
            .filter_map(|u| u.password().map(str::to_owned))
            .filter(|p| !p.is_empty())
            .collect()
    }
}

/// URLs masked ([`mask_url`]) and comma-separated.
fn masked_list(urls: &[String]) -> String {
    urls.iter()
        .map(|u| mask_url(u))
        .collect::<Vec<_>>()
        .join(",")
}

/// The characters a key prefix may end in: the separators Redis key names use between segments.
pub const KEY_SEPARATORS: [char; 6] = [':', '/', '|', '.', '-', '_'];

/// `--lock-key-prefix` (`LOCK_KEY_PREFIX`), checked: every key booking-cli writes or deletes
/// (`db drop` deletes every key under it) starts with it, so an empty prefix would be every
/// key of the Redis database, and one that ends mid-word (`adv`) would take other
/// applications' keys (`advertising:…`). It must be non-empty and end in a separator.
pub fn key_prefix(prefix: &str) -> Result<String, InputError> {
    if prefix.is_empty() {
        return Err(InputError::Invalid(
            "--lock-key-prefix (LOCK_KEY_PREFIX) is empty: every key of the Redis database would be booking-cli's, and db drop would delete them all; give a prefix such as 'booking-cli:'".to_owned(),
        ));
    }
    if !prefix.ends_with(KEY_SEPARATORS) {
        return Err(InputError::Invalid(format!(
            "--lock-key-prefix (LOCK_KEY_PREFIX) '{prefix}' must end in a separator (one of {}), e.g. '{prefix}:': without one it is also the start of other applications' keys",
            KEY_SEPARATORS
                .iter()
                .map(|c| format!("'{c}'"))
                .collect::<Vec<_>>()
                .join(" ")
        )));
    }
    Ok(prefix.to_owned())
}

/// A validated `book`.
#[derive(Debug, Clone)]
pub struct BookConfig {
    pub request: BookingRequest,
    pub mode: Mode,
    /// How a booking works and waits: hold, lock policy, retries, payments.
    pub tuning: Tuning,
    pub json: bool,
}

impl BookConfig {
    pub fn from_args(args: &BookArgs) -> Result<Self, InputError> {
        let stay = stay(args.stay.from, args.stay.nights, args.stay.to)?;
        Ok(Self {
            request: BookingRequest {
                user: args.user,
                room: args.room,
                stay,
            },
            mode: args.mode,
            tuning: tuning(&args.work),
            json: args.json,
        })
    }
}

/// A validated `stress`, and how to print it. With `--mode all`, one run per strategy.
#[derive(Debug, Clone)]
pub struct StressSettings {
    pub runs: Vec<StressConfig>,
    pub json: bool,
    /// `--target`: the `serve` base URLs to race over HTTP (empty: in this process).
    pub targets: Vec<TargetUrl>,
    /// `--repeat`: how many times each strategy's race runs (`runs` holds every one).
    pub repeat: u32,
    /// `--sync` as asked (a burst over `--target`: `auto` unless said).
    pub sync: Sync,
    /// For `https://` targets (`--cacert`).
    pub tls: Option<Tls>,
}

impl StressSettings {
    pub fn from_args(args: &StressArgs) -> Result<Self, InputError> {
        // clap bounds --inventory to 1,000,000, far inside i32. A closed loop must not sell out.
        let default_inventory = if args.duration.is_some() {
            1_000_000
        } else {
            1
        };
        let inventory =
            i32::try_from(args.inventory.unwrap_or(default_inventory)).unwrap_or(i32::MAX);
        if args.duration.is_some() && (args.processes > 1 || args.mixed_ranges) {
            return Err(InputError::Invalid(
                "--duration runs in one process on one-night bookings: drop --processes and --mixed-ranges".to_owned(),
            ));
        }
        let stay = stay(args.from, args.nights, args.to)?;
        if args.mixed_ranges && stay.len() < 2 {
            return Err(InputError::Invalid(
                "--mixed-ranges needs a stay of 2 or more nights (--nights or --to)".to_owned(),
            ));
        }
        if args.connections.is_some() && args.processes > 1 {
            return Err(InputError::Invalid(
                "--connections sizes one process's pool: drop it with --processes (each worker opens one connection per user)".to_owned(),
            ));
        }
        let sync = args.sync.unwrap_or(Sync::Auto);
        if args.duration.is_some() && matches!(sync, Sync::LastByte | Sync::SinglePacket) {
            return Err(InputError::Invalid(format!(
                "--sync {} releases a one-shot burst together; --duration runs a closed loop: drop one of them",
                sync.name()
            )));
        }
        let targets = args
            .target
            .iter()
            .map(|t| parse_target(t))
            .collect::<Result<Vec<_>, _>>()?;
        let https = targets.iter().any(|t| t.https);
        let tls = match (&args.cacert, https) {
            (_, true) => Some(Tls::new(args.cacert.as_deref())?),
            (Some(_), false) => {
                return Err(InputError::Invalid(
                    "--cacert goes with an https:// --target".to_owned(),
                ));
            }
            (None, false) => None,
        };
        if !args.target.is_empty() && (args.processes > 1 || !args.chaos.is_empty()) {
            return Err(InputError::Invalid(
                "--target races servers over HTTP: drop --processes and --chaos (run several servers instead)".to_owned(),
            ));
        }
        let record = args.timeline || args.trace.is_some() || args.report.is_some();
        if record && (args.duration.is_some() || args.processes > 1 || args.repeat > 1) {
            return Err(InputError::Invalid(
                "--timeline, --trace and --report draw one race: drop --duration, --processes and --repeat".to_owned(),
            ));
        }
        if args.processes > args.users {
            return Err(InputError::Invalid(format!(
                "--processes {} is more than --users {}: every process needs a user",
                args.processes, args.users
            )));
        }
        let tuning = tuning(&args.work);
        let runs = args
            .mode
            .modes()
            .into_iter()
            .map(|mode| StressConfig {
                mode,
                users: args.users,
                room: args.room,
                rooms: args.rooms,
                stay,
                mixed_ranges: args.mixed_ranges,
                inventory,
                shards: args.shards,
                hold: tuning.hold,
                lock_policy: tuning.lock_policy,
                retry: tuning.retry,
                payments: tuning.payments,
                expect: args
                    .expect
                    .unwrap_or(match (args.duration, mode.spec().shows) {
                        // A throughput measurement of an unprotected strategy on spread slots: no
                        // anomaly to expect.
                        (Some(_), Shows::Overbooking) => Expectation::Any,
                        // Several servers are several processes, as far as an in-process mutex goes.
                        _ => mode.default_expectation(
                            args.processes
                                .max(u32::try_from(args.target.len()).unwrap_or(u32::MAX)),
                        ),
                    }),
                duration: args.duration,
                servers: u32::try_from(args.target.len()).unwrap_or(u32::MAX),
                processes: args.processes,
                chaos: args.chaos.clone(),
                record,
            })
            // --repeat: each strategy's runs one after the other, each on a freshly prepared slot.
            .flat_map(|run| std::iter::repeat_n(run, args.repeat as usize))
            .collect();
        Ok(Self {
            runs,
            json: args.json,
            targets,
            repeat: args.repeat,
            sync,
            tls,
        })
    }
}

fn stay(
    from: chrono::NaiveDate,
    nights: Option<u32>,
    to: Option<chrono::NaiveDate>,
) -> Result<Stay, InputError> {
    Ok(match to {
        Some(to) => Stay::between(from, to)?,
        None => Stay::nights_from(from, nights.unwrap_or(1))?,
    })
}

/// A validated `serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: std::net::SocketAddr,
    pub settings: crate::http::ServeSettings,
    /// How a booking works and waits: hold, lock policy, retries, payments.
    pub tuning: Tuning,
}

impl ServeConfig {
    pub fn from_args(args: &crate::cli::ServeArgs) -> Self {
        let busy_status = if args.busy_status == "409" {
            axum::http::StatusCode::CONFLICT
        } else {
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        };
        Self {
            listen: args.listen,
            settings: crate::http::ServeSettings {
                mode: args.mode,
                busy_status,
                booking_timeout: args.booking_timeout,
                max_in_flight: args.max_in_flight as usize,
                drain: args.drain,
                header_timeout: args.header_timeout,
                body_timeout: args.body_timeout,
                max_connections: args.max_connections as usize,
            },
            tuning: tuning(&args.work),
        }
    }
}

/// The slow work and the waiting of a booking, from the flags every booking front door shares.
fn tuning(work: &WorkArgs) -> Tuning {
    Tuning {
        hold: Duration::from_millis(work.hold_ms),
        lock_policy: lock_policy(&work.lock),
        retry: retry_policy(&work.retry),
        payments: payments(work),
    }
}

fn lock_policy(args: &LockArgs) -> LockPolicy {
    LockPolicy {
        ttl: Duration::from_millis(args.lock_ttl_ms),
        retries: args.lock_retries,
        retry_delay: Duration::from_millis(args.lock_retry_delay_ms),
        wait: args.lock_wait_ms.map(Duration::from_millis),
        renew: args.lock_renew,
        replicas: args.lock_replicas,
    }
}

fn payments(args: &crate::cli::WorkArgs) -> Payments {
    Payments {
        fail_rate: args.fail_rate,
        seed: args.fail_seed,
        hold_ttl: Duration::from_millis(args.hold_ttl_ms),
    }
}

fn retry_policy(args: &RetryArgs) -> RetryPolicy {
    let base = Duration::from_millis(args.serializable_backoff_ms);
    RetryPolicy {
        retries: args.serializable_retries,
        backoff: Backoff {
            base,
            cap: base.saturating_mul(16),
        },
    }
}

/// A `--target`, parsed once: the base URL of a `serve` as given (without a trailing `/`, for
/// the keep-alive client and for messages, masked) and where its requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    pub base: String,
    pub https: bool,
    pub origin: Origin,
}

/// A `--target`: the base URL of a `serve` (scheme, host, port), nothing else — its paths are
/// booking-cli's own. Checked before anything is sent or written.
pub fn parse_target(target: &str) -> Result<TargetUrl, InputError> {
    let url = url::Url::parse(target)
        .map_err(|e| InputError::Invalid(format!("--target is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(InputError::Invalid(format!(
            "--target '{}' is not an http:// URL of a booking-cli serve",
            mask_url(target)
        )));
    }
    if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
        return Err(InputError::Invalid(format!(
            "--target '{}' must be a server's base URL (scheme, host, port): the API's paths are booking-cli's own",
            mask_url(target)
        )));
    }
    Ok(TargetUrl {
        base: target.trim_end_matches('/').to_owned(),
        https: url.scheme() == "https",
        origin: Origin::of(&url),
    })
}

/// The URL with its credentials replaced by `***` — the password of its user part, and the
/// value of any query parameter that carries one (`?password=`, libpq's `sslpassword`, a
/// `token`, a `secret`, a `key`); a URL that does not parse is not shown at all.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                // Only fails for URLs that cannot have credentials, which have no password.
                let _ = url.set_password(Some("***"));
            }
            if url.query().is_some() {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let secret = is_secret_parameter(&k);
                        (
                            k.into_owned(),
                            if secret {
                                "***".to_owned()
                            } else {
                                v.into_owned()
                            },
                        )
                    })
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            url.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// Whether a query parameter named `name` carries a credential.
fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "auth",
        "credential",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// Replaces every occurrence of each secret in `message` by `***`: the last line of defence
/// for messages built from errors this tool does not control.
pub fn scrub(message: &str, secrets: &[String]) -> String {
    secrets.iter().fold(message.to_owned(), |m, secret| {
        m.replace(secret.as_str(), "***")
    })
}

#[cfg(test)]
mod prefix_tests {
    use super::key_prefix;

    #[test]
    fn a_key_prefix_is_non_empty_and_ends_in_a_separator() {
        assert!(key_prefix("").is_err());
        assert!(key_prefix("adv").is_err());
        assert_eq!(key_prefix("adv:").ok().as_deref(), Some("adv:"));
        assert!(key_prefix("booking-cli-test:abc:").is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_query_are_masked() {
        assert_eq!(
            mask_url("postgres://u@h/db?sslmode=disable&password=s3cret"),
            "postgres://u@h/db?sslmode=disable&password=***"
        );
        assert_eq!(
            mask_url("http://h:1/?api_key=k1&sslpassword=p2"),
            "http://h:1/?api_key=***&sslpassword=***"
        );
    }

    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        assert_eq!(
            mask_url("postgres://postgres:s3cret@127.0.0.1:5432/booking"),
            "postgres://postgres:***@127.0.0.1:5432/booking"
        );
        assert_eq!(
            mask_url("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(mask_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn an_unparsable_url_is_not_echoed() {
        assert_eq!(mask_url("postgres://u:pw@[bad"), "<unparsable URL>");
    }

    #[test]
    fn scrub_removes_every_occurrence() {
        let secrets = vec!["pw1".to_owned()];
        assert_eq!(scrub("a pw1 b pw1", &secrets), "a *** b ***");
    }
}
