//! A request of `race` — one of the burst, or a `[[prepare]]` step — as it is written (a
//! [`RequestSpec`]: flags, or a table of the `--config` file) and as it is checked once and
//! expanded per user (a [`RequestTemplate`]): method, URL, headers, a body (raw, or a form),
//! the user's cookies; and what makes its answer a success ([`Success`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hyper::header::{HeaderName, HeaderValue};
use hyper::http::Method;
use regex::Regex;
use serde::Deserialize;

use super::template::{Parsing, Scope, Template};
use super::url::EndpointUrl;
use crate::error::InputError;
use crate::sync::delivery::{Addressed, Origin};
use crate::sync::h2::Prepared;
use crate::sync::http1::Answer;

/// A request as written: the flat keys of the file (and the flags), a `[[request]]` entry, or
/// a `[[prepare]]` step. `success` and `users` belong to the burst's requests, `expect` and
/// `extract` to the steps; [`RequestSpec::only`] refuses the others.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RequestSpec {
    pub name: Option<String>,
    pub url: Option<String>,
    pub method: Option<String>,
    #[serde(default)]
    pub header: Vec<String>,
    pub data: Option<String>,
    pub data_file: Option<PathBuf>,
    /// Fields sent url-encoded (`application/x-www-form-urlencoded`), in name order.
    #[serde(default)]
    pub form: BTreeMap<String, String>,
    pub success: Option<SuccessSpec>,
    /// How many users send it (`[[request]]`): the next that many, in order.
    pub users: Option<u32>,
    /// Fewer successes of this request in a run is `UNTESTED` (`[[request]]`; default 0: the
    /// burst's `--min-successes` counts every request together).
    pub min_successes: Option<u32>,
    /// The statuses that let a user go on (`[[prepare]]`; default: any below 400).
    #[serde(default)]
    pub expect: Vec<u16>,
    /// `extract.NAME = { regex = "…" }`, `{ json = "/pointer" }`, `{ header = "Name" }`,
    /// `{ cookie = "name" }` (`[[prepare]]`).
    #[serde(default)]
    pub extract: BTreeMap<String, ExtractSpec>,
}

/// Where a value is taken from in an answer: exactly one of these.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractSpec {
    pub regex: Option<String>,
    pub json: Option<String>,
    pub header: Option<String>,
    pub cookie: Option<String>,
}

impl RequestSpec {
    /// Refuses the keys that do not belong to `table`: a step has no `success` or `users`, a
    /// request of the burst no `expect` or `extract`.
    pub fn only(&self, table: &str, step: bool) -> Result<(), InputError> {
        let wrong: &[(bool, &str)] = if step {
            &[
                (self.success.is_some(), "success"),
                (self.users.is_some(), "users"),
                (self.min_successes.is_some(), "min-successes"),
            ]
        } else {
            &[
                (!self.expect.is_empty(), "expect"),
                (!self.extract.is_empty(), "extract"),
            ]
        };
        match wrong.iter().find(|(given, _)| *given) {
            Some((_, key)) => Err(InputError::Invalid(format!(
                "{table}: {key} belongs to {}",
                if step {
                    "the requests of the burst ([[request]]), not to a [[prepare]] step"
                } else {
                    "a [[prepare]] step, not to a request of the burst"
                }
            ))),
            None => Ok(()),
        }
    }
}

/// `pattern` compiled, or one line naming `label` and what is wrong with it.
pub fn regex(pattern: &str, label: &str) -> Result<Regex, InputError> {
    Regex::new(pattern).map_err(|e| {
        let text = e.to_string();
        let last = text
            .lines()
            .last()
            .unwrap_or("not a regex")
            .trim()
            .to_owned();
        InputError::Invalid(format!("{label}: '{pattern}' is not a regex: {last}"))
    })
}

/// `success = [201, 200]`, or `success = { status = [302], header = { Location = "^/orders/" },
/// body = "regex" }`: every part given must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SuccessSpec {
    Statuses(Vec<u16>),
    Rule(SuccessRule),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuccessRule {
    #[serde(default)]
    pub status: Vec<u16>,
    #[serde(default)]
    pub header: BTreeMap<String, String>,
    pub body: Option<String>,
}

/// The body of a request.
#[derive(Debug, Clone)]
pub enum Body {
    None,
    /// As written (`-d`, `--data-file`); `application/json` unless a header says otherwise.
    Raw(Template),
    /// `--form`, `form = {…}`: each value a template, url-encoded after it is expanded.
    Form(Vec<(String, Template)>),
}

/// One request, checked, as a template expanded per user.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    /// How outputs name it (`[[request]]`'s `name`; `request` for the one-request form).
    pub name: String,
    pub method: Method,
    /// Parsed once: the origin fixed, the path and query a template.
    pub url: EndpointUrl,
    pub headers: Vec<(HeaderName, Template)>,
    pub body: Body,
}

/// Which answers are acknowledged successes: every part given must hold.
#[derive(Debug, Clone, Default)]
pub struct Success {
    /// Empty: any 2xx when nothing else is given; any status but a 5xx when a header or body
    /// pattern is (a server's failure is never a success it acknowledged).
    pub statuses: Vec<u16>,
    pub headers: Vec<(HeaderName, Regex)>,
    pub body: Option<Regex>,
}

impl Success {
    /// Statuses only (`--success 201,200`; empty: any 2xx).
    pub fn statuses(statuses: Vec<u16>) -> Self {
        Self {
            statuses,
            ..Self::default()
        }
    }

    fn patterns(&self) -> bool {
        !self.headers.is_empty() || self.body.is_some()
    }

    /// Whether `status` may be a success (the patterns aside).
    pub fn status_may(&self, status: u16) -> bool {
        if !self.statuses.is_empty() {
            return self.statuses.contains(&status);
        }
        if self.patterns() {
            status < 500
        } else {
            (200..300).contains(&status)
        }
    }

    /// Whether `answer` is an acknowledged success.
    pub fn matches(&self, answer: &Answer) -> bool {
        self.status_may(answer.status)
            && self.headers.iter().all(|(name, pattern)| {
                answer
                    .all(name.as_str())
                    .any(|value| pattern.is_match(value))
            })
            && self
                .body
                .as_ref()
                .is_none_or(|pattern| pattern.is_match(&String::from_utf8_lossy(&answer.body)))
    }

    /// As the headline says it: `302 with Location ~ ^/orders/`, `any 2xx`.
    pub fn display(&self) -> String {
        let mut out = match (self.statuses.as_slice(), self.patterns()) {
            ([], false) => "any 2xx".to_owned(),
            ([], true) => "any status below 500".to_owned(),
            (list, _) => list
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
        };
        for (name, pattern) in &self.headers {
            out.push_str(&format!(" with {name} ~ {pattern}"));
        }
        if let Some(pattern) = &self.body {
            out.push_str(&format!(" with body ~ {pattern}"));
        }
        out
    }

    /// Parsed from its parts; `label` names where they came from.
    pub fn parse(
        statuses: Vec<u16>,
        headers: &[(String, String)],
        body: Option<&str>,
        label: &str,
    ) -> Result<Self, InputError> {
        if let Some(bad) = statuses.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(InputError::Invalid(format!(
                "{label}: {bad} is not an HTTP status (100-599)"
            )));
        }
        let regex = |pattern: &str, what: &str| {
            Regex::new(pattern).map_err(|e| {
                let first = e.to_string();
                let last = first
                    .lines()
                    .last()
                    .unwrap_or("not a regex")
                    .trim()
                    .to_owned();
                InputError::Invalid(format!(
                    "{label} {what}: '{pattern}' is not a regex: {last}"
                ))
            })
        };
        let mut compiled = Vec::new();
        for (name, pattern) in headers {
            let header = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                InputError::Invalid(format!("{label}: '{}' is not a header name", name.trim()))
            })?;
            compiled.push((header, regex(pattern.trim(), name.trim())?));
        }
        Ok(Self {
            statuses,
            headers: compiled,
            body: body.map(|b| regex(b, "body")).transpose()?,
        })
    }
}

impl SuccessSpec {
    /// The statuses, header patterns and body pattern it gives.
    pub fn into_parts(self) -> (Vec<u16>, Vec<(String, String)>, Option<String>) {
        match self {
            SuccessSpec::Statuses(list) => (list, Vec::new(), None),
            SuccessSpec::Rule(rule) => (rule.status, rule.header.into_iter().collect(), rule.body),
        }
    }
}

/// Where a spec's errors point: the flags of the one-request form, or a table of the file.
#[derive(Debug, Clone, Copy)]
pub enum Label<'a> {
    Flags,
    Table(&'a str),
}

impl Label<'_> {
    /// How the key `key` (whose flag is `flag`) is named in an error.
    pub fn of(&self, key: &str, flag: &str) -> String {
        match self {
            Label::Flags => flag.to_owned(),
            Label::Table(table) => format!("{table} {key}"),
        }
    }
}

impl RequestTemplate {
    /// Checks `spec` once: its URL, method, headers and body, every placeholder known to
    /// `parsing`; `dir` is where a relative `data-file` is read from; `default_method` applies
    /// when the spec names none.
    pub fn parse(
        spec: &RequestSpec,
        label: Label<'_>,
        name: String,
        default_method: &str,
        dir: Option<&Path>,
        parsing: &mut Parsing<'_>,
    ) -> Result<Self, InputError> {
        let url_label = label.of("url", "--url");
        let url = spec.url.as_deref().ok_or_else(|| {
            InputError::Invalid(match label {
                Label::Flags => "race needs --url (or url in --config)".to_owned(),
                Label::Table(_) => format!("{url_label} is missing"),
            })
        })?;
        let url = EndpointUrl::parse(url, &url_label, parsing)?;
        let method = spec.method.as_deref().unwrap_or(default_method);
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| {
            InputError::Invalid(format!(
                "{}: '{method}' is not a method",
                label.of("method", "-X/--method")
            ))
        })?;
        let mut headers = Vec::new();
        for line in &spec.header {
            headers.push(parse_header(line, &label.of("header", "-H"), parsing)?);
        }
        let data_label = label.of("data", "-d/--data");
        let given = [
            spec.data.is_some(),
            spec.data_file.is_some(),
            !spec.form.is_empty(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(InputError::Invalid(format!(
                "{data_label}: give one body: data, data-file or form"
            )));
        }
        let body = if let Some(data) = &spec.data {
            Body::Raw(Template::parse(data, &data_label, parsing)?)
        } else if let Some(path) = &spec.data_file {
            let path = match dir {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path.clone(),
            };
            let text = std::fs::read_to_string(&path).map_err(|e| {
                InputError::Invalid(format!(
                    "{}: {}: cannot read it: {e}",
                    label.of("data-file", "--data-file"),
                    path.display()
                ))
            })?;
            Body::Raw(Template::parse(&text, &data_label, parsing)?)
        } else if !spec.form.is_empty() {
            let form_label = label.of("form", "--form");
            let mut fields = Vec::new();
            for (key, value) in &spec.form {
                fields.push((
                    key.clone(),
                    Template::parse(value, &format!("{form_label} {key}"), parsing)?,
                ));
            }
            Body::Form(fields)
        } else {
            Body::None
        };
        Ok(Self {
            name,
            method,
            url,
            headers,
            body,
        })
    }

    pub fn has_body(&self) -> bool {
        !matches!(self.body, Body::None)
    }

    /// The request for `scope`, with `cookies` (the user's jar) in its `Cookie` header: where
    /// it goes, what it is, and its URL (for the jar). A header value that cannot be sent once
    /// expanded is said, naming the header.
    pub fn address(
        &self,
        scope: &Scope<'_>,
        cookies: Option<&cookie_store::CookieStore>,
    ) -> Result<(Addressed, url::Url), String> {
        let Origin {
            host,
            port,
            authority,
        } = self.url.origin.clone();
        let path = self.url.path.expand(scope);
        let whole = format!("{}://{authority}{path}", self.url.scheme());
        let url = url::Url::parse(&whole).map_err(|e| format!("{}: {e}", self.name))?;
        let mut headers = Vec::with_capacity(self.headers.len() + 2);
        for (name, value) in &self.headers {
            let value = value.expand(scope);
            HeaderValue::from_str(&value)
                .map_err(|_| format!("{} header {name}: the value cannot be sent", self.name))?;
            headers.push((name.clone(), value));
        }
        if let Some(jar) = cookies {
            let jar: Vec<String> = jar
                .get_request_values(&url)
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            if !jar.is_empty() {
                let jar = jar.join("; ");
                // A Cookie header the user wrote keeps its place; the session's follow it.
                match headers.iter_mut().find(|(n, _)| n == hyper::header::COOKIE) {
                    Some((_, value)) => *value = format!("{value}; {jar}"),
                    None => headers.push((hyper::header::COOKIE, jar)),
                }
            }
        }
        let (body, content_type) = match &self.body {
            Body::None => (Vec::new(), None),
            Body::Raw(template) => (
                template.expand(scope).into_bytes(),
                Some("application/json"),
            ),
            Body::Form(fields) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                for (key, value) in fields {
                    form.append_pair(key, &value.expand(scope));
                }
                (
                    form.finish().into_bytes(),
                    Some("application/x-www-form-urlencoded"),
                )
            }
        };
        if let Some(content_type) = content_type
            && !body.is_empty()
            && !headers
                .iter()
                .any(|(n, _)| n == hyper::header::CONTENT_TYPE)
        {
            headers.push((hyper::header::CONTENT_TYPE, content_type.to_owned()));
        }
        let request = Prepared {
            method: self.method.clone(),
            uri: whole,
            headers,
            body,
        };
        Ok((
            Addressed {
                host,
                port,
                authority,
                path,
                request,
            },
            url,
        ))
    }
}

/// `Name: value`, the value a template.
fn parse_header(
    line: &str,
    label: &str,
    parsing: &mut Parsing<'_>,
) -> Result<(HeaderName, Template), InputError> {
    let (name, value) = line.split_once(':').ok_or_else(|| {
        InputError::Invalid(format!(
            "{label} must be 'Name: value', got '{}'",
            line.chars().take(40).collect::<String>()
        ))
    })?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
        InputError::Invalid(format!("{label}: '{}' is not a header name", name.trim()))
    })?;
    if [
        hyper::header::CONTENT_LENGTH,
        hyper::header::CONNECTION,
        hyper::header::TRANSFER_ENCODING,
    ]
    .contains(&name)
    {
        return Err(InputError::Invalid(format!(
            "{label} {name}: race sets it itself (one request per connection, its length from the body)"
        )));
    }
    let value = Template::parse(value.trim(), &format!("{label} {name}"), parsing)?;
    // A value that cannot be sent is said now, not after the burst started.
    HeaderValue::from_str(&value.expand(&Scope::bare(0, 1))).map_err(|_| {
        InputError::Invalid(format!(
            "{label} {name}: the value holds characters a header cannot carry"
        ))
    })?;
    Ok((name, value))
}

/// `Name: pattern` of `--success-header`.
pub fn split_header_pattern(line: &str) -> Result<(String, String), InputError> {
    line.split_once(':')
        .map(|(n, p)| (n.trim().to_owned(), p.trim().to_owned()))
        .ok_or_else(|| {
            InputError::Invalid(format!(
                "--success-header must be 'Name: regex', got '{}'",
                line.chars().take(40).collect::<String>()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
        Answer {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_success_holds_when_every_part_given_holds() {
        let location = vec![("Location".to_owned(), "^/orders/".to_owned())];
        let rule = Success::parse(vec![302], &location, None, "success").unwrap();
        assert!(rule.matches(&answer(302, &[("location", "/orders/7")], "")));
        assert!(!rule.matches(&answer(302, &[("location", "/sold-out")], "")));
        assert!(!rule.matches(&answer(303, &[("location", "/orders/7")], "")));
        let body = Success::parse(vec![], &[], Some("booked"), "success").unwrap();
        assert!(body.matches(&answer(200, &[], "you booked it")));
        assert!(
            !body.matches(&answer(500, &[], "booked")),
            "a 5xx is never a success unless listed"
        );
        let plain = Success::statuses(vec![]);
        assert!(plain.matches(&answer(204, &[], "")));
        assert!(!plain.matches(&answer(302, &[], "")));
        assert_eq!(rule.display(), "302 with location ~ ^/orders/");
    }

    #[test]
    fn a_bad_pattern_or_status_is_one_line_naming_it() {
        let bad = Success::parse(vec![], &[], Some("(unclosed"), "--success-body").unwrap_err();
        assert!(
            bad.to_string()
                .starts_with("--success-body body: '(unclosed'"),
            "{bad}"
        );
        assert!(!bad.to_string().contains('\n'), "{bad}");
        let bad = Success::parse(vec![99], &[], None, "--success").unwrap_err();
        assert!(
            bad.to_string().contains("99 is not an HTTP status"),
            "{bad}"
        );
    }

    #[test]
    fn a_form_is_url_encoded_and_the_jar_goes_in_the_cookie_header() {
        let env = |_: &str| None;
        let mut parsing = Parsing::new(&env);
        parsing.know("csrf");
        let spec = RequestSpec {
            url: Some("http://127.0.0.1:9/buy".to_owned()),
            header: vec!["Cookie: theme=dark".to_owned()],
            form: BTreeMap::from([
                ("csrf".to_owned(), "{{csrf}}".to_owned()),
                ("qty".to_owned(), "1 & more".to_owned()),
            ]),
            ..RequestSpec::default()
        };
        let template = RequestTemplate::parse(
            &spec,
            Label::Flags,
            "buy".into(),
            "POST",
            None,
            &mut parsing,
        )
        .unwrap();
        let vars = BTreeMap::from([("csrf".to_owned(), "a+b".to_owned())]);
        let mut jar = cookie_store::CookieStore::new();
        let url = url::Url::parse("http://127.0.0.1:9/login").unwrap();
        jar.parse("session=s1; Path=/", &url).unwrap();
        let scope = Scope {
            user: 0,
            run: 1,
            vars: Some(&vars),
        };
        let (addressed, _) = template.address(&scope, Some(&jar)).unwrap();
        assert_eq!(addressed.request.body, b"csrf=a%2Bb&qty=1+%26+more");
        let header = |name| {
            addressed
                .request
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            header(hyper::header::CONTENT_TYPE).as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            header(hyper::header::COOKIE).as_deref(),
            Some("theme=dark; session=s1")
        );
    }
}
