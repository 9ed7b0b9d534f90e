//! `race`: the settings of a burst at someone else's endpoint, from its flags and its
//! `--config` file, validated before anything is sent.
//!
//! - [`template`]: the per-user placeholders of the URL, the headers and the body;
//! - the burst itself is [`crate::targets::endpoint`], driven by the runner ([`crate::run`]);
//! - its invariant is the user's SQL, read through [`crate::check_db`], judged by
//!   [`crate::run::verdict`];
//! - its outputs are [`crate::report`]'s: `text/race.rs`, `json.rs`, `junit.rs`, `markdown.rs`.

pub mod judge;
pub mod template;
pub mod url;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::http::Method;
use serde::Deserialize;

use crate::cli::{RaceArgs, RaceExpect};
use crate::error::InputError;
use crate::strategy::Expectation;
use crate::sync::Sync;
use crate::sync::tls::Tls;
use template::Template;
use url::EndpointUrl;

/// `--users` when neither a flag nor the file says.
pub const DEFAULT_USERS: u32 = 20;
pub const MAX_USERS: u32 = 1_000;

/// A `--config` file: every flag's value under the flag's name.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RaceFile {
    url: Option<String>,
    method: Option<String>,
    #[serde(default)]
    header: Vec<String>,
    data: Option<String>,
    data_file: Option<PathBuf>,
    #[serde(default)]
    success: Vec<u16>,
    users: Option<u32>,
    timeout: Option<String>,
    repeat: Option<u32>,
    check_db: Option<String>,
    #[serde(default)]
    check: Vec<String>,
    max_successes: Option<u64>,
    min_successes: Option<u32>,
    allow_errors: Option<u32>,
    count: Option<String>,
    #[serde(default)]
    setup: Vec<String>,
    check_timeout: Option<String>,
    expect: Option<RaceExpect>,
    sync: Option<Sync>,
    http2: Option<bool>,
    cacert: Option<PathBuf>,
}

/// One request, as a template expanded per user.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    pub method: Method,
    /// Parsed once: the origin fixed, the path and query a template.
    pub url: EndpointUrl,
    pub headers: Vec<(HeaderName, Template)>,
    pub body: Option<Template>,
}

/// Which statuses are acknowledged successes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Success {
    AnyTwoHundred,
    Statuses(Vec<u16>),
}

impl Success {
    pub fn contains(&self, status: u16) -> bool {
        match self {
            Success::AnyTwoHundred => (200..300).contains(&status),
            Success::Statuses(list) => list.contains(&status),
        }
    }

    pub fn display(&self) -> String {
        match self {
            Success::AnyTwoHundred => "any 2xx".to_owned(),
            Success::Statuses(list) => list
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// A validated `race`.
#[derive(Debug, Clone)]
pub struct RaceSettings {
    pub request: RequestTemplate,
    pub success: Success,
    /// How the burst is released (`--sync`, resolved: `none`, `last-byte` or
    /// `single-packet`).
    pub sync: Sync,
    /// What was asked for: under `auto`, a server without HTTP/2 falls back to last-byte.
    pub sync_asked: Sync,
    /// For an `https://` endpoint.
    pub tls: Option<Tls>,
    pub users: u32,
    pub timeout: Duration,
    pub repeat: u32,
    /// The service's database; required by `--check`, `--count` and `--setup`.
    pub check_db: Option<String>,
    pub checks: Vec<String>,
    pub max_successes: Option<u64>,
    /// Fewer acknowledged successes than this is `UNTESTED` (`--min-successes`, default 1).
    pub min_successes: u32,
    /// Requests without an answer (or with a 5xx) a held run may have (`--allow-errors`,
    /// default 0).
    pub allow_errors: u32,
    pub count: Option<String>,
    pub setup: Vec<String>,
    pub check_timeout: Duration,
    pub expect: Expectation,
    /// Values that must never be printed: `{{env:…}}` values, the check database's password.
    pub secrets: Vec<String>,
}

impl RaceSettings {
    /// The settings of `args` over those of `--config`, checked as a whole: one line naming
    /// the flag for whatever does not fit, before anything is sent.
    pub fn from_args(args: &RaceArgs) -> Result<Self, InputError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => RaceFile::default(),
        };
        let env = |name: &str| std::env::var(name).ok();
        Self::merge(args, file, &env)
    }

    fn merge(
        args: &RaceArgs,
        file: RaceFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, InputError> {
        let mut secrets = Vec::new();
        let url = args.url.clone().or(file.url).ok_or_else(|| {
            InputError::Invalid("race needs --url (or url in --config)".to_owned())
        })?;
        let url = EndpointUrl::parse(&url, env, &mut secrets)?;
        let https = url.https;
        let cacert = args.cacert.clone().or(file.cacert);
        let tls = if https {
            Some(Tls::new(cacert.as_deref())?)
        } else {
            if cacert.is_some() {
                return Err(InputError::Invalid(
                    "--cacert goes with an https:// --url".to_owned(),
                ));
            }
            None
        };
        let method = args
            .method
            .clone()
            .or(file.method)
            .unwrap_or_else(|| "POST".to_owned());
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| InputError::Invalid(format!("-X/--method: '{method}' is not a method")))?;
        let header_lines = if args.headers.is_empty() {
            file.header
        } else {
            args.headers.clone()
        };
        let mut headers = Vec::new();
        for line in &header_lines {
            headers.push(parse_header(line, env, &mut secrets)?);
        }
        let body = match (&args.data, &args.data_file, file.data, file.data_file) {
            (Some(data), _, _, _) => Some(data.clone()),
            (None, Some(path), _, _) => Some(read_body(path)?),
            (None, None, Some(data), _) => Some(data),
            (None, None, None, Some(path)) => Some(read_body(&path)?),
            (None, None, None, None) => None,
        };
        let body = body
            .map(|b| Template::parse(&b, "-d/--data", env, &mut secrets))
            .transpose()?;
        let success = if args.success.is_empty() {
            file.success
        } else {
            args.success.clone()
        };
        if let Some(bad) = success.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(InputError::Invalid(format!(
                "--success: {bad} is not an HTTP status (100-599)"
            )));
        }
        let success = if success.is_empty() {
            Success::AnyTwoHundred
        } else {
            Success::Statuses(success)
        };
        let users = args.users.or(file.users).unwrap_or(DEFAULT_USERS);
        if !(1..=MAX_USERS).contains(&users) {
            return Err(InputError::Invalid(format!(
                "--users must be 1-{MAX_USERS}, got {users}"
            )));
        }
        let timeout = duration(args.timeout, file.timeout, "--timeout", 30)?;
        let check_timeout = duration(
            args.check_timeout,
            file.check_timeout,
            "--check-timeout",
            10,
        )?;
        let repeat = args.repeat.or(file.repeat).unwrap_or(1);
        if !(1..=10_000).contains(&repeat) {
            return Err(InputError::Invalid(format!(
                "--repeat must be 1-10000, got {repeat}"
            )));
        }
        let checks = if args.checks.is_empty() {
            file.check
        } else {
            args.checks.clone()
        };
        let setup = if args.setup.is_empty() {
            file.setup
        } else {
            args.setup.clone()
        };
        let count = args.count.clone().or(file.count);
        let max_successes = args.max_successes.or(file.max_successes);
        let min_successes = args.min_successes.or(file.min_successes).unwrap_or(1);
        if min_successes > users {
            return Err(InputError::Invalid(format!(
                "--min-successes {min_successes} is more than --users {users}: no run could be tested"
            )));
        }
        let allow_errors = args.allow_errors.or(file.allow_errors).unwrap_or(0);
        let check_db = args.check_db.clone().or(file.check_db);
        let needs_db = [
            (!checks.is_empty(), "--check"),
            (count.is_some(), "--count"),
            (!setup.is_empty(), "--setup"),
        ];
        if check_db.is_none()
            && let Some((_, flag)) = needs_db.iter().find(|(given, _)| *given)
        {
            return Err(InputError::Invalid(format!(
                "{flag} needs --check-db URL (or CHECK_DATABASE_URL): the service's own PostgreSQL"
            )));
        }
        if checks.is_empty() && count.is_none() && max_successes.is_none() {
            return Err(InputError::Invalid(
                "race needs an invariant to judge by: --check SQL, --count SQL or --max-successes N"
                    .to_owned(),
            ));
        }
        if let Some(db) = &check_db
            && let Ok(parsed) = ::url::Url::parse(db)
            && let Some(password) = parsed.password()
        {
            secrets.push(password.to_owned());
        }
        let sync = args.sync.or(file.sync).unwrap_or(Sync::Auto);
        // Over TLS, HTTP/2 is negotiated (ALPN): single-packet needs no --http2 there.
        let http2 = args.http2 || file.http2.unwrap_or(false) || https;
        let sync_asked = sync;
        let sync = sync
            .resolve(body.is_some(), http2)
            .map_err(|e| InputError::Invalid(e.to_string()))?;
        let expect = match args.expect.or(file.expect).unwrap_or(RaceExpect::Held) {
            RaceExpect::Held => Expectation::Safe,
            RaceExpect::Violated => Expectation::Overbooking,
            RaceExpect::Any => Expectation::Any,
        };
        Ok(Self {
            request: RequestTemplate {
                method,
                url,
                headers,
                body,
            },
            success,
            sync,
            sync_asked,
            tls,
            users,
            timeout,
            repeat,
            check_db,
            checks,
            max_successes,
            min_successes,
            allow_errors,
            count,
            setup,
            check_timeout,
            expect,
            secrets,
        })
    }
}

fn read_file(path: &Path) -> Result<RaceFile, InputError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        InputError::Invalid(format!("--config {}: cannot read it: {e}", path.display()))
    })?;
    toml::from_str(&text).map_err(|e| {
        let first = e.message().lines().next().unwrap_or("not TOML").to_owned();
        InputError::Invalid(format!("--config {}: {first}", path.display()))
    })
}

fn read_body(path: &Path) -> Result<String, InputError> {
    std::fs::read_to_string(path).map_err(|e| {
        InputError::Invalid(format!(
            "--data-file {}: cannot read it: {e}",
            path.display()
        ))
    })
}

/// A flag's duration, else the file's (humantime text), else `default_secs`.
fn duration(
    flag: Option<Duration>,
    file: Option<String>,
    name: &str,
    default_secs: u64,
) -> Result<Duration, InputError> {
    let value = match (flag, file) {
        (Some(d), _) => d,
        // The file's value is checked as the flag's is: the same parser, the same range.
        (None, Some(text)) => crate::cli::parse_duration(&text)
            .map_err(|e| InputError::Invalid(format!("{name} in --config: {e}")))?,
        (None, None) => Duration::from_secs(default_secs),
    };
    if value.is_zero() {
        return Err(InputError::Invalid(format!("{name} must be above zero")));
    }
    Ok(value)
}

/// `Name: value`, the value a template.
fn parse_header(
    line: &str,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Vec<String>,
) -> Result<(HeaderName, Template), InputError> {
    let (name, value) = line.split_once(':').ok_or_else(|| {
        InputError::Invalid(format!(
            "-H/--header must be 'Name: value', got '{}'",
            line.chars().take(40).collect::<String>()
        ))
    })?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
        InputError::Invalid(format!(
            "-H/--header: '{}' is not a header name",
            name.trim()
        ))
    })?;
    if [
        hyper::header::CONTENT_LENGTH,
        hyper::header::CONNECTION,
        hyper::header::TRANSFER_ENCODING,
    ]
    .contains(&name)
    {
        return Err(InputError::Invalid(format!(
            "-H {name}: race sets it itself (one request per connection, its length from -d)"
        )));
    }
    let value = Template::parse(value.trim(), &format!("-H {name}"), env, secrets)?;
    // A value that cannot be sent is said now, not after the burst started.
    HeaderValue::from_str(&value.expand(0, 1)).map_err(|_| {
        InputError::Invalid(format!(
            "-H {name}: the value holds characters a header cannot carry"
        ))
    })?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RaceArgs {
        RaceArgs {
            url: Some("http://127.0.0.1:9/book".to_owned()),
            max_successes: Some(1),
            ..RaceArgs::default()
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let file: RaceFile = toml::from_str(
            r#"
            url = "http://127.0.0.1:1/from-file"
            users = 7
            check = ["select 1 where false"]
            check-db = "postgres://u:pw@127.0.0.1/db"
            expect = "violated"
            timeout = "2s"
            "#,
        )
        .unwrap();
        let s = RaceSettings::merge(&args(), file, &no_env).unwrap();
        assert_eq!(s.request.url.expand(0, 1), "http://127.0.0.1:9/book");
        assert_eq!(s.users, 7);
        assert_eq!(s.expect, Expectation::Overbooking);
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.request.method, Method::POST);
        assert_eq!(s.success, Success::AnyTwoHundred);
        assert!(
            s.secrets.contains(&"pw".to_owned()),
            "the password is a secret"
        );
    }

    #[test]
    fn bad_input_is_one_line_naming_the_flag() {
        let cases: Vec<(RaceArgs, &str)> = vec![
            (
                RaceArgs {
                    checks: vec!["select 1".to_owned()],
                    ..args()
                },
                "--check needs --check-db",
            ),
            (
                RaceArgs {
                    max_successes: None,
                    ..args()
                },
                "needs an invariant",
            ),
            (
                RaceArgs {
                    url: Some("ftp://127.0.0.1/".to_owned()),
                    ..args()
                },
                "--url must be http:// or https://",
            ),
            (
                RaceArgs {
                    cacert: Some("/nonexistent.pem".into()),
                    ..args()
                },
                "--cacert goes with an https://",
            ),
            (
                RaceArgs {
                    url: Some("http://me:pw@127.0.0.1/".to_owned()),
                    ..args()
                },
                "must not carry credentials",
            ),
            (
                RaceArgs {
                    data: Some("{{who}}".to_owned()),
                    ..args()
                },
                "unknown placeholder {{who}}",
            ),
            (
                RaceArgs {
                    headers: vec!["NoColon".to_owned()],
                    ..args()
                },
                "'Name: value'",
            ),
        ];
        for (args, says) in cases {
            let error = RaceSettings::merge(&args, RaceFile::default(), &no_env).unwrap_err();
            let line = error.to_string();
            assert!(line.contains(says), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn durations_in_the_file_are_checked_as_the_flags_are() {
        for (key, value) in [("timeout", "5 weeks"), ("check-timeout", "30days")] {
            let file: RaceFile =
                toml::from_str(&format!("{key} = '{value}'\nmax-successes = 1")).unwrap();
            let error = RaceSettings::merge(&args(), file, &no_env).unwrap_err();
            assert!(
                error.to_string().contains("between 1ms and 1h"),
                "{key}: {error}"
            );
        }
    }

    #[test]
    fn an_unknown_key_in_the_file_is_refused() {
        assert!(toml::from_str::<RaceFile>("urll = 'x'").is_err());
    }
}
