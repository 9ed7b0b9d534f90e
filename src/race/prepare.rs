//! `[[prepare]]`: the steps every user runs, in order, before the burst — a login, a form
//! fetched for its CSRF token — each user with a cookie jar of their own, so that the burst
//! goes out as twenty logged-in users, not one session shared twenty times (which hides
//! per-user races, and which frameworks that lock a session serialise).
//!
//! A step's answer must have a status in its `expect`; its `extract` values become the
//! user's placeholders in later steps and in the burst. Anything else stops the race before
//! the burst, in one line naming the step, the user and what came back. Preparation is not
//! timed with the burst: it ends before any connection of the burst is opened.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::request::{ExtractSpec, Label, RequestSpec, RequestTemplate};
use super::template::{Parsing, Scope, valid_name};
use crate::error::InputError;
use crate::sync::delivery::Wire;
use crate::sync::exchange;
use crate::sync::http1::Answer;

/// Users prepared at once: a login per user is real work for the service (password hashing),
/// and the burst, not its preparation, is what is raced.
const PREPARING_AT_ONCE: usize = 8;

/// Where an extracted value comes from.
#[derive(Debug, Clone)]
pub enum Extract {
    /// The first capture group (or the whole match) of a regex over the body.
    Regex(Regex),
    /// An RFC 6901 pointer into the JSON body.
    Json(String),
    Header(String),
    Cookie(String),
}

/// A checked step.
#[derive(Debug, Clone)]
pub struct Step {
    pub request: RequestTemplate,
    /// Statuses that let the user go on; empty: any below 400.
    pub expect: Vec<u16>,
    pub extract: Vec<(String, Extract)>,
}

impl Step {
    /// Checks step `index` (from 1): its request with the placeholders known so far, its
    /// extractors; the names it extracts are known to the steps and requests after it.
    pub fn parse(
        spec: &RequestSpec,
        index: usize,
        dir: Option<&std::path::Path>,
        parsing: &mut Parsing<'_>,
    ) -> Result<Self, InputError> {
        let name = spec.name.clone().unwrap_or_else(|| format!("step {index}"));
        let table = format!("[[prepare]] {index} ({name})");
        spec.only(&table, true)?;
        let request = RequestTemplate::parse(
            spec,
            Label::Table(&table),
            name,
            if spec.data.is_some() || spec.data_file.is_some() || !spec.form.is_empty() {
                "POST"
            } else {
                "GET"
            },
            dir,
            parsing,
        )?;
        if let Some(bad) = spec.expect.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(InputError::Invalid(format!(
                "{table} expect: {bad} is not an HTTP status (100-599)"
            )));
        }
        let mut extract = Vec::new();
        for (key, how) in &spec.extract {
            if !valid_name(key) {
                return Err(InputError::Invalid(format!(
                    "{table} extract.{key}: not a placeholder name (letters, digits, _ and -; not uuid, user or run)"
                )));
            }
            extract.push((
                key.clone(),
                Extract::parse(how, &format!("{table} extract.{key}"))?,
            ));
        }
        for (key, _) in &extract {
            parsing.know(key);
        }
        Ok(Self {
            request,
            expect: spec.expect.clone(),
            extract,
        })
    }

    fn expects(&self, status: u16) -> bool {
        if self.expect.is_empty() {
            status < 400
        } else {
            self.expect.contains(&status)
        }
    }
}

impl Extract {
    fn parse(spec: &ExtractSpec, label: &str) -> Result<Self, InputError> {
        let given = [&spec.regex, &spec.json, &spec.header, &spec.cookie]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if given != 1 {
            return Err(InputError::Invalid(format!(
                "{label}: give exactly one of regex, json, header, cookie"
            )));
        }
        if let Some(pattern) = &spec.regex {
            return Ok(Extract::Regex(super::request::regex(pattern, label)?));
        }
        if let Some(pointer) = &spec.json {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(InputError::Invalid(format!(
                    "{label}: '{pointer}' is not a JSON pointer (RFC 6901: '/a/0/b', or '' for the whole body)"
                )));
            }
            return Ok(Extract::Json(pointer.clone()));
        }
        if let Some(header) = &spec.header {
            return Ok(Extract::Header(header.clone()));
        }
        Ok(Extract::Cookie(spec.cookie.clone().unwrap_or_default()))
    }

    /// The value in `answer` (the user's jar holding its cookies already).
    fn find(&self, answer: &Answer, jar: &cookie_store::CookieStore) -> Option<String> {
        match self {
            Extract::Regex(regex) => {
                let body = String::from_utf8_lossy(&answer.body);
                let found = regex.captures(&body)?;
                let value = found.get(1).or_else(|| found.get(0))?;
                Some(value.as_str().to_owned())
            }
            Extract::Json(pointer) => {
                let body: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
                match body.pointer(pointer)? {
                    serde_json::Value::String(text) => Some(text.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                }
            }
            Extract::Header(name) => answer.header(name).map(str::to_owned),
            Extract::Cookie(name) => jar
                .iter_unexpired()
                .find(|cookie| cookie.name() == name)
                .map(|cookie| cookie.value().to_owned()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Extract::Regex(regex) => format!("regex '{regex}' matched nothing in the body"),
            Extract::Json(pointer) => format!("JSON pointer '{pointer}' found nothing in the body"),
            Extract::Header(name) => format!("no header {name} in the answer"),
            Extract::Cookie(name) => format!("no cookie {name} in the user's jar"),
        }
    }
}

/// A user, prepared: their values (`users-file` columns, then what the steps extracted) and
/// their cookies. The values found on the way (cookies, extracted values) are secrets.
#[derive(Default)]
pub struct Session {
    pub vars: BTreeMap<String, String>,
    pub jar: cookie_store::CookieStore,
    pub secrets: Vec<String>,
}

/// Why a user could not be prepared: the race stops before the burst.
#[derive(Debug, thiserror::Error)]
#[error("user {user}, [[prepare]] {step}: {why} (nothing was raced)")]
pub struct PrepareFailed {
    pub user: u32,
    /// `1 (login)`.
    pub step: String,
    pub why: String,
}

/// What the steps run with.
pub struct Preparation<'a> {
    pub steps: &'a [Step],
    pub wire: &'a Wire,
    pub run: u32,
    /// The whole preparation's deadline (`--prepare-timeout`).
    pub deadline: Duration,
    /// `-vv`: each step's answer on stderr, secrets masked.
    pub show: bool,
    /// Values never to print.
    pub secrets: &'a [String],
}

impl Preparation<'_> {
    /// Prepares every user (`rows[u]` their `users-file` row, when there is one), a bounded
    /// number at once; the first failure ends it.
    pub async fn all(
        &self,
        users: u32,
        rows: &[BTreeMap<String, String>],
    ) -> Result<Vec<Session>, PrepareFailed> {
        let limit = Arc::new(tokio::sync::Semaphore::new(PREPARING_AT_ONCE));
        let work = futures_util::future::try_join_all((0..users).map(|user| {
            let limit = Arc::clone(&limit);
            let row = rows.get(user as usize).cloned().unwrap_or_default();
            async move {
                let _permit = limit.acquire().await;
                self.one(user, row).await
            }
        }));
        match tokio::time::timeout(self.deadline, work).await {
            Ok(sessions) => sessions,
            Err(_) => Err(PrepareFailed {
                user: 0,
                step: "(all)".to_owned(),
                why: format!(
                    "the users were not prepared within {} (--prepare-timeout)",
                    humantime::format_duration(self.deadline)
                ),
            }),
        }
    }

    /// User `user`'s steps, in order.
    async fn one(
        &self,
        user: u32,
        row: BTreeMap<String, String>,
    ) -> Result<Session, PrepareFailed> {
        let mut session = Session {
            vars: row,
            ..Session::default()
        };
        for (index, step) in self.steps.iter().enumerate() {
            let label = format!("{} ({})", index + 1, step.request.name);
            let fail = |why: String| PrepareFailed {
                user,
                step: label.clone(),
                why,
            };
            let scope = Scope {
                user,
                run: self.run,
                vars: Some(&session.vars),
            };
            let (addressed, url) = step
                .request
                .address(&scope, Some(&session.jar))
                .map_err(fail)?;
            // As written, placeholders shown: an expanded value may be a secret.
            let shown = format!("{} {}", step.request.method, step.request.url.display());
            let answer = exchange::one(self.wire, addressed)
                .await
                .map_err(|e| fail(format!("{shown}: {}", e.no_answer())))?;
            for set_cookie in answer.all("set-cookie") {
                if let Some((_, value)) =
                    set_cookie.split(';').next().and_then(|c| c.split_once('='))
                {
                    keep_secret(&mut session.secrets, value.trim());
                }
                // A cookie the jar refuses (a foreign domain, a bad syntax) is not sent back,
                // as a browser would not.
                let _ = session.jar.parse(set_cookie, &url);
            }
            let checked = self.check(step, &answer, &mut session, &shown);
            if self.show {
                // After the extraction: the values it found are masked too.
                let mut all = self.secrets.to_vec();
                all.extend(session.secrets.iter().cloned());
                eprintln!(
                    "{}",
                    crate::config::scrub(
                        &format!("prepare user {user} · {label}: {}", glance(&answer)),
                        &all
                    )
                );
            }
            checked.map_err(fail)?;
        }
        Ok(session)
    }
}

impl Preparation<'_> {
    /// The step's answer has an expected status, and every value it extracts; the values go
    /// into the user's placeholders (and secrets).
    fn check(
        &self,
        step: &Step,
        answer: &Answer,
        session: &mut Session,
        shown: &str,
    ) -> Result<(), String> {
        if !step.expects(answer.status) {
            let expected = if step.expect.is_empty() {
                "below 400".to_owned()
            } else {
                step.expect
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            return Err(format!(
                "{shown} answered {}, expected {expected}",
                status_line(answer.status)
            ));
        }
        for (name, how) in &step.extract {
            let value = how.find(answer, &session.jar).ok_or_else(|| {
                format!(
                    "extract.{name}: {} ({shown} answered {})",
                    how.describe(),
                    status_line(answer.status)
                )
            })?;
            keep_secret(&mut session.secrets, &value);
            session.vars.insert(name.clone(), value);
        }
        Ok(())
    }
}

/// A session cookie or an extracted token is masked wherever it would be printed; a value of
/// a few characters is no secret (and masking it would garble every line it occurs in).
fn keep_secret(secrets: &mut Vec<String>, value: &str) {
    if value.chars().count() >= 4 {
        secrets.push(value.to_owned());
    }
}

/// `302 Found`.
pub fn status_line(status: u16) -> String {
    let reason = hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}").trim_end().to_owned()
}

/// An answer at a glance, as `-v` prints it: the status, `Location`, and the first bytes of
/// the body on one line (the caller masks the secrets).
pub fn glance(answer: &Answer) -> String {
    let mut line = status_line(answer.status);
    if let Some(location) = answer.header("location") {
        line.push_str(&format!(" · Location: {location}"));
    }
    let body = String::from_utf8_lossy(&answer.body);
    let body: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect();
    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if !body.is_empty() {
        line.push_str(&format!(" · {body}"));
    }
    line
}
