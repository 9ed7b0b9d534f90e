//! `race`: the settings of a burst at someone else's endpoint, from its flags and its
//! `--config` file, validated before anything is sent.
//!
//! - [`file`]: the `--config` file as written; [`users`]: `users-file`;
//! - [`request`]: a request as a template, and what makes its answer a success;
//! - [`burst`]: the requests of one burst, and which users send each;
//! - [`template`]: the per-user placeholders of the URL, the headers and the body;
//! - [`prepare`]: the `[[prepare]]` steps each user runs, with a cookie jar of their own;
//! - the burst itself is [`crate::targets::endpoint`], driven by the runner ([`crate::run`]);
//! - its invariant is the user's SQL, read through [`crate::check_db`], judged by
//!   [`crate::run::verdict`];
//! - its outputs are [`crate::report`]'s: `text/race.rs`, `json.rs`, `junit.rs`, `markdown.rs`.
//!
//! Where a setting comes from, in one order: a flag, else the `--config` file, else the
//! environment (`CHECK_DATABASE_URL`) — a file written for this service beats a variable left
//! in the shell.

pub mod api_check;
pub mod burst;
pub mod file;
pub mod jq;
pub mod judge;
pub mod prepare;
pub mod request;
pub mod setup_cmd;
pub mod template;
pub mod url;
pub mod users;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::cli::{Baseline, RaceArgs, RaceExpect};
use crate::error::InputError;
use crate::strategy::Expectation;
use crate::sync::Sync;
use crate::sync::tls::Tls;
pub use burst::{RaceRequest, Slot};
use file::RaceFile;
use prepare::Step;
use template::Parsing;

/// `--users` when neither a flag nor the file says.
pub const DEFAULT_USERS: u32 = 20;
pub const MAX_USERS: u32 = 1_000;

/// A validated `race`.
#[derive(Debug, Clone)]
pub struct RaceSettings {
    /// The requests of the burst (one, unless the file has `[[request]]` entries).
    pub requests: Vec<RaceRequest>,
    /// Every request of the burst, in the order they are prepared: each user's, by request.
    pub slots: Vec<Slot>,
    /// `[[prepare]]`: the steps every user runs before each burst.
    pub prepare: Vec<Step>,
    /// `users-file`: user *i*'s row, their first placeholders.
    pub rows: Vec<BTreeMap<String, String>>,
    /// The whole preparation's deadline (`--prepare-timeout`).
    pub prepare_timeout: Duration,
    /// The JUnit suite's name (`--name`; the config file's stem; `booking-cli race`).
    pub name: String,
    /// Where `check_db` came from: `--check-db`, `race.toml`, `CHECK_DATABASE_URL`.
    pub check_db_source: Option<String>,
    /// `-v`: each answer of the burst on stderr; `-vv`: the preparation's too.
    pub verbose: u8,
    /// How the burst is released (`--sync`, resolved: `none`, `last-byte` or
    /// `single-packet`).
    pub sync: Sync,
    /// What was asked for: under `auto`, a server without HTTP/2 falls back to last-byte.
    pub sync_asked: Sync,
    /// For an `https://` endpoint.
    pub tls: Option<Tls>,
    /// Users: sessions, each with their jar and values.
    pub users: u32,
    pub timeout: Duration,
    pub repeat: u32,
    /// The service's database; required by `--check`, `--count` and `--setup`.
    pub check_db: Option<String>,
    pub checks: Vec<String>,
    /// `--check-url` / `--check-jq`: the state read back through the service's API.
    pub api_checks: Vec<api_check::ApiCheck>,
    pub max_successes: Option<u64>,
    /// Fewer acknowledged successes than this is `UNTESTED` (`--min-successes`, default 1).
    pub min_successes: u32,
    /// Requests without an answer (or with a 5xx) a held run may have (`--allow-errors`,
    /// default 0).
    pub allow_errors: u32,
    pub count: Option<String>,
    pub setup: Vec<String>,
    /// `--setup-cmd`: shell commands run before each run, after `setup`.
    pub setup_cmds: Vec<String>,
    /// `--baseline sequential`: each run also sent one by one, from the same start.
    pub baseline: Option<Baseline>,
    pub check_timeout: Duration,
    pub expect: Expectation,
    /// Values that must never be printed: `{{env:…}}` values, the check database's password.
    pub secrets: Vec<String>,
}

impl RaceSettings {
    /// The settings of `args` over those of `--config`, over the environment, checked as a
    /// whole: one line naming the flag for whatever does not fit, before anything is sent.
    pub fn from_args(args: &RaceArgs, verbose: u8) -> Result<Self, InputError> {
        let file = match &args.config {
            Some(path) => file::read(path)?,
            None => RaceFile::default(),
        };
        let env = |name: &str| std::env::var(name).ok();
        let mut settings = Self::merge(args, file, &env)?;
        settings.verbose = verbose;
        Ok(settings)
    }

    /// How many requests one burst sends.
    pub fn burst_size(&self) -> u32 {
        u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }

    /// Whether the burst has more than the one request of the flat form.
    pub fn several(&self) -> bool {
        self.requests.len() > 1
    }

    fn merge(
        args: &RaceArgs,
        file: RaceFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, InputError> {
        let mut parsing = Parsing::new(env);
        // Relative paths in the file are relative to the file.
        let dir = args
            .config
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf);
        let config_name = args
            .config
            .as_deref()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned());
        let users = args.users.or(file.users).unwrap_or(DEFAULT_USERS);
        if !(1..=MAX_USERS).contains(&users) {
            return Err(InputError::Invalid(format!(
                "--users must be 1-{MAX_USERS}, got {users}"
            )));
        }
        let mut rows = Vec::new();
        let users_file = match (&args.users_file, &file.users_file) {
            (Some(path), _) => Some(path.clone()),
            (None, Some(path)) => Some(match &dir {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path.clone(),
            }),
            (None, None) => None,
        };
        if let Some(path) = &users_file {
            let read = users::read(path, &path.display().to_string(), users)?;
            for column in &read.columns {
                parsing.know(column);
            }
            parsing.secrets.extend(read.secrets);
            rows = read.rows;
        }
        let mut prepare = Vec::new();
        for (i, step) in file.prepare.iter().enumerate() {
            prepare.push(Step::parse(step, i + 1, dir.as_deref(), &mut parsing)?);
        }
        let (requests, cacert_https) =
            burst::requests(args, &file, dir.as_deref(), users, &mut parsing)?;
        let slots = burst::slots(&requests)?;
        let headers = if args.headers.is_empty() {
            &file.header
        } else {
            &args.headers
        };
        let api_checks = api_check::parse(args, &file.check_url, headers, &mut parsing)?;
        let https = cacert_https
            || prepare.iter().any(|s| s.request.url.https)
            || api_checks.iter().any(|c| c.request.url.https);
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
        let timeout = duration(args.timeout, file.timeout, "--timeout", 30)?;
        let check_timeout = duration(
            args.check_timeout,
            file.check_timeout,
            "--check-timeout",
            10,
        )?;
        let prepare_timeout = duration(
            args.prepare_timeout,
            file.prepare_timeout,
            "--prepare-timeout",
            60,
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
        let setup_cmds = if args.setup_cmd.is_empty() {
            file.setup_cmd
        } else {
            args.setup_cmd.clone()
        };
        let baseline = args.baseline.or(file.baseline);
        if baseline.is_some() && setup.is_empty() && setup_cmds.is_empty() {
            return Err(InputError::Invalid(
                "--baseline sequential needs a way back to the start between the sequence and the burst: --setup SQL or --setup-cmd CMD".to_owned(),
            ));
        }
        let count = args.count.clone().or(file.count);
        let max_successes = args.max_successes.or(file.max_successes);
        let min_successes = args.min_successes.or(file.min_successes).unwrap_or(1);
        if min_successes as usize > slots.len() {
            return Err(InputError::Invalid(format!(
                "--min-successes {min_successes} is more than the {} request(s) of the burst: no run could be tested",
                slots.len()
            )));
        }
        let allow_errors = args.allow_errors.or(file.allow_errors).unwrap_or(0);
        // Flags, then the file, then the environment: a file written for this service beats
        // a variable left in the shell.
        let (check_db, check_db_source) = match (&args.check_db, file.check_db) {
            (Some(url), _) => (Some(url.clone()), Some("--check-db".to_owned())),
            (None, Some(url)) => (
                Some(url),
                Some(config_name.clone().unwrap_or_else(|| "--config".to_owned())),
            ),
            (None, None) => match env("CHECK_DATABASE_URL").filter(|v| !v.is_empty()) {
                Some(url) => (Some(url), Some("CHECK_DATABASE_URL".to_owned())),
                None => (None, None),
            },
        };
        let needs_db = [
            (!checks.is_empty(), "--check"),
            (count.is_some(), "--count"),
            (!setup.is_empty(), "--setup"),
        ];
        if check_db.is_none()
            && let Some((_, flag)) = needs_db.iter().find(|(given, _)| *given)
        {
            return Err(InputError::Invalid(format!(
                "{flag} needs --check-db URL (or check-db in --config, or CHECK_DATABASE_URL): the service's own PostgreSQL"
            )));
        }
        if checks.is_empty()
            && count.is_none()
            && max_successes.is_none()
            && baseline.is_none()
            && api_checks.is_empty()
        {
            return Err(InputError::Invalid(
                "race needs an invariant to judge by: --check SQL, --count SQL, --max-successes N, --check-url with --check-jq, or --baseline sequential"
                    .to_owned(),
            ));
        }
        let mut secrets = parsing.secrets;
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
        let all_have_a_body = requests.iter().all(|r| r.template.has_body());
        let sync = sync.resolve(all_have_a_body, http2).map_err(|e| {
            let without = requests
                .iter()
                .find(|r| !r.template.has_body())
                .filter(|_| requests.len() > 1)
                .map(|r| format!(" (request {} has none)", r.template.name))
                .unwrap_or_default();
            InputError::Invalid(format!("{e}{without}"))
        })?;
        let expect = match args.expect.or(file.expect).unwrap_or(RaceExpect::Held) {
            RaceExpect::Held => Expectation::Safe,
            RaceExpect::Violated => Expectation::Overbooking,
            RaceExpect::Any => Expectation::Any,
        };
        let name = args
            .name
            .clone()
            .or(file.name)
            .or_else(|| {
                args.config
                    .as_deref()
                    .and_then(Path::file_stem)
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "booking-cli race".to_owned());
        Ok(Self {
            requests,
            slots,
            prepare,
            rows,
            prepare_timeout,
            name,
            check_db_source,
            verbose: 0,
            sync,
            sync_asked,
            tls,
            users,
            timeout,
            repeat,
            check_db,
            checks,
            api_checks,
            max_successes,
            min_successes,
            allow_errors,
            count,
            setup,
            setup_cmds,
            baseline,
            check_timeout,
            expect,
            secrets,
        })
    }
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
        let env = |name: &str| {
            (name == "CHECK_DATABASE_URL").then(|| "postgres://stale@127.0.0.1/other".to_owned())
        };
        let s = RaceSettings::merge(&args(), file, &env).unwrap();
        let request = &s.requests[0].template;
        let bare = template::Scope::bare(0, 1);
        assert_eq!(request.url.expand(&bare), "http://127.0.0.1:9/book");
        assert_eq!(s.users, 7);
        assert_eq!(s.expect, Expectation::Overbooking);
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(request.method, hyper::http::Method::POST);
        assert_eq!(s.requests[0].success.display(), "any 2xx");
        assert_eq!(
            s.check_db.as_deref(),
            Some("postgres://u:pw@127.0.0.1/db"),
            "the file beats a variable left in the shell"
        );
        assert_eq!(s.check_db_source.as_deref(), Some("--config"));
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
            (
                RaceArgs {
                    check_url: vec!["http://127.0.0.1:9/state".to_owned()],
                    ..args()
                },
                "--check-url and --check-jq go in pairs: 1 URL(s), 0 expression(s)",
            ),
            (
                RaceArgs {
                    baseline: Some(Baseline::Sequential),
                    ..args()
                },
                "--baseline sequential needs a way back to the start",
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

    #[test]
    fn the_environment_is_the_last_resort_and_a_flag_beats_all() {
        let env = |name: &str| {
            (name == "CHECK_DATABASE_URL").then(|| "postgres://env@127.0.0.1/db".to_owned())
        };
        let with_check = || RaceArgs {
            checks: vec!["select 1 where false".to_owned()],
            ..args()
        };
        let s = RaceSettings::merge(&with_check(), RaceFile::default(), &env).unwrap();
        assert_eq!(s.check_db_source.as_deref(), Some("CHECK_DATABASE_URL"));
        let flag = RaceArgs {
            check_db: Some("postgres://flag@127.0.0.1/db".to_owned()),
            ..with_check()
        };
        let file: RaceFile = toml::from_str("check-db = 'postgres://file@127.0.0.1/db'").unwrap();
        let s = RaceSettings::merge(&flag, file, &env).unwrap();
        assert_eq!(s.check_db.as_deref(), Some("postgres://flag@127.0.0.1/db"));
        assert_eq!(s.check_db_source.as_deref(), Some("--check-db"));
    }

    #[test]
    fn requests_with_a_count_take_the_next_users_and_the_others_go_to_all() {
        let file: RaceFile = toml::from_str(
            r#"
            users = 4
            max-successes = 1
            [[request]]
            name = "book"
            url = "http://127.0.0.1:9/book"
            data = "{}"
            users = 3
            [[request]]
            name = "cancel"
            url = "http://127.0.0.1:9/cancel"
            data = "{}"
            users = 2
            [[request]]
            name = "look"
            url = "http://127.0.0.1:9/look"
            data = "{}"
            "#,
        )
        .unwrap();
        let bare = RaceArgs {
            max_successes: Some(1),
            ..RaceArgs::default()
        };
        let s = RaceSettings::merge(&bare, file, &no_env).unwrap();
        let senders: Vec<Vec<u32>> = s.requests.iter().map(|r| r.senders.clone()).collect();
        assert_eq!(senders, vec![vec![0, 1, 2], vec![3, 0], vec![0, 1, 2, 3]]);
        assert_eq!(s.burst_size(), 9);
        assert_eq!(
            s.slots[0],
            Slot {
                user: 0,
                request: 0
            }
        );
        assert_eq!(
            s.slots[1],
            Slot {
                user: 0,
                request: 1
            }
        );
        let both: RaceFile = toml::from_str(
            "url = 'http://h/x'\nmax-successes = 1\n[[request]]\nurl = 'http://h/y'",
        )
        .unwrap();
        let error = RaceSettings::merge(&bare, both, &no_env).unwrap_err();
        assert!(
            error.to_string().contains("[[request]] entries: url"),
            "{error}"
        );
    }

    #[test]
    fn a_key_in_the_wrong_table_is_named() {
        let bare = RaceArgs {
            max_successes: Some(1),
            ..RaceArgs::default()
        };
        for (text, says) in [
            (
                "url = 'http://h/x'\n[[prepare]]\nurl = 'http://h/login'\nsuccess = [200]",
                "[[prepare]] 1 (step 1): success belongs to the requests of the burst",
            ),
            (
                "url = 'http://h/x'\n[[prepare]]\nurl = 'http://h/p'\nmin-successes = 1",
                "min-successes belongs to the requests of the burst",
            ),
            (
                "[[request]]\nurl = 'http://h/x'\nexpect = [200]",
                "[[request]] 1 (request 1): expect belongs to a [[prepare]] step",
            ),
            (
                "url = 'http://h/x'\n[[prepare]]\nurl = 'http://h/p'\nextract.t = { regex = 'a', json = '/b' }",
                "extract.t: give exactly one of regex, json, header, cookie",
            ),
        ] {
            let file: RaceFile = toml::from_str(text).unwrap();
            let error = RaceSettings::merge(&bare, file, &no_env).unwrap_err();
            assert!(error.to_string().contains(says), "{error}");
        }
    }

    #[test]
    fn an_extracted_name_is_a_placeholder_only_after_its_step() {
        let early: RaceFile = toml::from_str(
            r#"
            url = "http://127.0.0.1:9/buy"
            form = { csrf = "{{csrf}}" }
            max-successes = 1
            [[prepare]]
            url = "http://127.0.0.1:9/form?t={{csrf}}"
            extract.csrf = { regex = 'csrf=(\w+)' }
            "#,
        )
        .unwrap();
        let bare = RaceArgs {
            max_successes: Some(1),
            ..RaceArgs::default()
        };
        let error = RaceSettings::merge(&bare, early, &no_env).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("[[prepare]] 1 (step 1) url: unknown placeholder {{csrf}}"),
            "{error}"
        );
    }
}
