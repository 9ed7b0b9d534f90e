//! The `--config` file of `race`, as written: every flag's value under the flag's name, plus
//! what only a file can say — `users-file`, `[[prepare]]` steps and `[[request]]` entries. Its
//! keys are a contract (docs/race.md); an unknown one is refused, not ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::request::{RequestSpec, SuccessSpec};
use crate::cli::{Baseline, RaceExpect};
use crate::error::InputError;
use crate::sync::Sync;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RaceFile {
    /// The one-request form: `url`, `method`, `data`, `data-file`, `form`.
    pub url: Option<String>,
    pub method: Option<String>,
    /// Sent on every request of the burst (and before a `[[request]]`'s own).
    #[serde(default)]
    pub header: Vec<String>,
    pub data: Option<String>,
    pub data_file: Option<PathBuf>,
    #[serde(default)]
    pub form: BTreeMap<String, String>,
    /// Every request's, unless a `[[request]]` says its own.
    pub success: Option<SuccessSpec>,
    /// Several requests in one burst.
    #[serde(default)]
    pub request: Vec<RequestSpec>,
    /// Steps every user runs before the burst, each with a cookie jar of their own: requests
    /// with `expect` and `extract`.
    #[serde(default)]
    pub prepare: Vec<RequestSpec>,
    pub users_file: Option<PathBuf>,
    pub prepare_timeout: Option<String>,
    /// The JUnit suite's name.
    pub name: Option<String>,
    pub users: Option<u32>,
    pub timeout: Option<String>,
    pub repeat: Option<u32>,
    pub check_db: Option<String>,
    #[serde(default)]
    pub check: Vec<String>,
    /// `[[check-url]]`: the state read through the service's API, judged by jq.
    #[serde(default)]
    pub check_url: Vec<super::api_check::CheckUrlSpec>,
    pub max_successes: Option<u64>,
    pub min_successes: Option<u32>,
    pub allow_errors: Option<u32>,
    pub count: Option<String>,
    #[serde(default)]
    pub setup: Vec<String>,
    #[serde(default)]
    pub setup_cmd: Vec<String>,
    pub baseline: Option<Baseline>,
    pub check_timeout: Option<String>,
    pub expect: Option<RaceExpect>,
    pub sync: Option<Sync>,
    pub http2: Option<bool>,
    pub cacert: Option<PathBuf>,
}

/// Reads and parses `path`: one line naming the file and what is wrong in it.
pub fn read(path: &Path) -> Result<RaceFile, InputError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        InputError::Invalid(format!("--config {}: cannot read it: {e}", path.display()))
    })?;
    toml::from_str(&text).map_err(|e| {
        let first = e.message().lines().next().unwrap_or("not TOML").to_owned();
        let at = e
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].lines().count().max(1);
                format!(" (line {line})")
            })
            .unwrap_or_default();
        InputError::Invalid(format!("--config {}: {first}{at}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_keys_parse() {
        let file: RaceFile = toml::from_str(
            r#"
            users-file = "users.csv"
            name = "shop"
            [[prepare]]
            name = "login"
            method = "POST"
            url = "http://127.0.0.1:1/login"
            form = { username = "{{username}}", password = "{{password}}" }
            expect = [302]
            [[prepare]]
            url = "http://127.0.0.1:1/events/7"
            extract.csrf = { regex = 'name="csrf" value="([^"]+)"' }
            extract.sid = { cookie = "session" }
            [[request]]
            name = "buy"
            url = "http://127.0.0.1:1/events/7/buy"
            form = { csrf = "{{csrf}}" }
            users = 10
            success = { status = [302], header = { Location = "^/orders/" } }
            [[request]]
            name = "cancel"
            url = "http://127.0.0.1:1/cancel"
            success = [200]
            "#,
        )
        .unwrap();
        assert_eq!(file.prepare.len(), 2);
        assert_eq!(file.prepare[1].extract.len(), 2);
        assert_eq!(file.request[0].users, Some(10));
        assert!(matches!(
            file.request[1].success,
            Some(SuccessSpec::Statuses(_))
        ));
        assert_eq!(file.prepare[0].expect, vec![302]);
        assert!(toml::from_str::<RaceFile>("[[prepare]]\nurll = 'x'").is_err());
        assert!(toml::from_str::<RaceFile>("urll = 'x'").is_err());
    }
}
