//! `--check-url URL --check-jq EXPR` (or `[[check-url]]` tables: `url`, `jq`, `header`): the
//! state read back through the service's own API. After each run the URL is read (a GET, with
//! the burst's headers and placeholders, as user 0 — with their session when there is one)
//! and the jq expression ([`super::jq`]) run on its JSON: `false` or `null` is a violation,
//! shown with the JSON it read. `$before` is the same URL read before the burst.

use serde::Deserialize;

use super::request::{Label, RequestSpec, RequestTemplate};
use super::template::Parsing;
use crate::cli::RaceArgs;
use crate::error::InputError;

/// A `[[check-url]]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckUrlSpec {
    pub url: String,
    pub jq: String,
    #[serde(default)]
    pub header: Vec<String>,
}

/// A checked URL and its expression.
#[derive(Debug, Clone)]
pub struct ApiCheck {
    pub request: RequestTemplate,
    pub jq: String,
}

impl ApiCheck {
    /// How outputs name it: `GET URL | jq EXPR`.
    pub fn display(&self) -> String {
        format!("GET {} | jq {}", self.request.url.display(), self.jq)
    }
}

/// The flags' pairs (`--check-url` with `--check-jq`, by position), else the file's tables;
/// `headers` are the burst's, sent first.
pub fn parse(
    args: &RaceArgs,
    tables: &[CheckUrlSpec],
    headers: &[String],
    parsing: &mut Parsing<'_>,
) -> Result<Vec<ApiCheck>, InputError> {
    if args.check_url.len() != args.check_jq.len() {
        return Err(InputError::Invalid(format!(
            "--check-url and --check-jq go in pairs: {} URL(s), {} expression(s)",
            args.check_url.len(),
            args.check_jq.len()
        )));
    }
    let specs: Vec<CheckUrlSpec> = if args.check_url.is_empty() {
        tables.to_vec()
    } else {
        args.check_url
            .iter()
            .zip(&args.check_jq)
            .map(|(url, jq)| CheckUrlSpec {
                url: url.clone(),
                jq: jq.clone(),
                header: Vec::new(),
            })
            .collect()
    };
    let mut checks = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let table = if args.check_url.is_empty() {
            format!("[[check-url]] {}", i + 1)
        } else {
            "--check-url".to_owned()
        };
        let request = RequestSpec {
            url: Some(spec.url.clone()),
            method: Some("GET".to_owned()),
            header: headers.iter().chain(&spec.header).cloned().collect(),
            ..RequestSpec::default()
        };
        let request = RequestTemplate::parse(
            &request,
            Label::Table(&table),
            format!("check {}", i + 1),
            "GET",
            None,
            parsing,
        )?;
        super::jq::check(&spec.jq)
            .map_err(|why| InputError::Invalid(format!("--check-jq {why}")))?;
        checks.push(ApiCheck {
            request,
            jq: spec.jq.clone(),
        });
    }
    Ok(checks)
}
