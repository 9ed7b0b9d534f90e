//! Request templates: text with placeholders expanded per user — `{{uuid}}` (a fresh v4),
//! `{{user}}` (the 0-based index), `{{run}}` (the run of `--repeat`, from 1) and
//! `{{env:NAME}}` (an environment variable, so that a token never sits on a command line; its
//! value is a secret, masked in every output), and the user's own values: the columns of
//! `users-file` and what `[[prepare]]` steps extracted (`{{username}}`, `{{csrf}}`). Parsed
//! once, before anything is sent: an unknown placeholder or a missing variable is bad input.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::InputError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Uuid,
    User,
    Run,
    /// The variable's value, read when the template was parsed.
    Env(String),
    /// A column of `users-file`, or a value a `[[prepare]]` step extracted: the user's own.
    Var(String),
}

/// What templates are parsed with: the environment (`{{env:NAME}}`), the names a user's own
/// values go by (the `users-file` columns, the values extracted so far), and the secrets found
/// on the way, which no output may show.
pub struct Parsing<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    names: BTreeSet<String>,
    pub secrets: Vec<String>,
}

impl<'a> Parsing<'a> {
    pub fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            env,
            names: BTreeSet::new(),
            secrets: Vec::new(),
        }
    }

    /// `{{name}}` is known from here on.
    pub fn know(&mut self, name: &str) {
        self.names.insert(name.to_owned());
    }

    pub fn knows(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The placeholders known, as an error lists them.
    fn known(&self) -> String {
        let mut all = vec![
            "{{uuid}}".to_owned(),
            "{{user}}".to_owned(),
            "{{run}}".to_owned(),
        ];
        all.extend(self.names.iter().map(|n| format!("{{{{{n}}}}}")));
        all.push("{{env:NAME}}".to_owned());
        all.join(", ")
    }
}

/// What a template is expanded for: a user, a run, and that user's own values.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub user: u32,
    pub run: u32,
    pub vars: Option<&'a BTreeMap<String, String>>,
}

impl Scope<'_> {
    /// User `user` of run `run`, with no values of their own.
    pub fn bare(user: u32, run: u32) -> Scope<'static> {
        Scope {
            user,
            run,
            vars: None,
        }
    }
}

/// Whether `name` may name a placeholder of the user's: not one of the built-in ones, and
/// made of letters, digits, `_` and `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !["uuid", "user", "run"].contains(&name)
        && !name.starts_with("env:")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; `flag` names where it came from in errors (`--url`, `-H`, `-d`). The
    /// values of `{{env:NAME}}` are read from the environment and kept as secrets.
    pub fn parse(text: &str, flag: &str, parsing: &mut Parsing<'_>) -> Result<Self, InputError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                InputError::Invalid(format!(
                    "{flag}: '{{{{' without its '}}}}' (placeholders: {})",
                    parsing.known()
                ))
            })?;
            let name = after[..close].trim();
            parts.push(match name {
                "uuid" => Part::Uuid,
                "user" => Part::User,
                "run" => Part::Run,
                _ if parsing.knows(name) => Part::Var(name.to_owned()),
                _ => match name.strip_prefix("env:") {
                    Some(var) if !var.is_empty() && !var.contains('{') => {
                        let value = (parsing.env)(var).ok_or_else(|| {
                            InputError::Invalid(format!(
                                "{flag}: {{{{env:{var}}}}} names an environment variable that is not set"
                            ))
                        })?;
                        if !value.is_empty() {
                            parsing.secrets.push(value.clone());
                        }
                        Part::Env(value)
                    }
                    _ => {
                        return Err(InputError::Invalid(format!(
                            "{flag}: unknown placeholder {{{{{name}}}}} (known here: {})",
                            parsing.known()
                        )));
                    }
                },
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The text for `scope`'s user and run.
    pub fn expand(&self, scope: &Scope<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) | Part::Env(text) => out.push_str(text),
                Part::Uuid => out.push_str(&uuid::Uuid::new_v4().to_string()),
                Part::User => out.push_str(&scope.user.to_string()),
                Part::Run => out.push_str(&scope.run.to_string()),
                Part::Var(name) => {
                    if let Some(value) = scope.vars.and_then(|vars| vars.get(name)) {
                        out.push_str(value);
                    }
                }
            }
        }
        out
    }

    /// The text with every placeholder shown as written and every `{{env:…}}` value masked:
    /// what may be printed.
    pub fn display(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Env(_) => out.push_str("***"),
                Part::Uuid => out.push_str("{{uuid}}"),
                Part::User => out.push_str("{{user}}"),
                Part::Run => out.push_str("{{run}}"),
                Part::Var(name) => {
                    out.push_str("{{");
                    out.push_str(name);
                    out.push_str("}}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_owned())
    }

    #[test]
    fn placeholders_expand_per_user_and_run_and_env_values_are_secrets() {
        let mut parsing = Parsing::new(&env);
        let t = Template::parse(
            r#"{"user": {{user}}, "run": {{run}}, "id": "{{uuid}}", "t": "{{env:TOKEN}}"}"#,
            "-d",
            &mut parsing,
        )
        .unwrap();
        let a = t.expand(&Scope::bare(3, 2));
        assert!(a.starts_with(r#"{"user": 3, "run": 2, "id": ""#), "{a}");
        assert!(a.ends_with(r#"", "t": "s3cret"}"#), "{a}");
        assert_ne!(t.expand(&Scope::bare(3, 2)), a, "a fresh uuid each time");
        assert_eq!(parsing.secrets, vec!["s3cret".to_owned()]);
        assert!(!t.display().contains("s3cret"), "{}", t.display());
    }

    #[test]
    fn an_unknown_placeholder_an_unset_variable_and_an_unclosed_brace_are_bad_input() {
        let mut parsing = Parsing::new(&env);
        for (text, says) in [
            ("{{nope}}", "unknown placeholder {{nope}}"),
            ("{{env:MISSING}}", "not set"),
            ("{{user", "without its"),
            ("{{env:SESSION_{{user}}}}", "unknown placeholder"),
        ] {
            let error = Template::parse(text, "-d", &mut parsing).unwrap_err();
            assert!(error.to_string().starts_with("-d: "), "{error}");
            assert!(error.to_string().contains(says), "{error}");
        }
    }

    #[test]
    fn a_users_own_values_expand_for_that_user_only_once_known() {
        let mut parsing = Parsing::new(&env);
        assert!(Template::parse("{{csrf}}", "-d", &mut parsing).is_err());
        parsing.know("csrf");
        let t = Template::parse("csrf={{csrf}}&u={{user}}", "-d", &mut parsing).unwrap();
        let vars = BTreeMap::from([("csrf".to_owned(), "t0k".to_owned())]);
        let scope = Scope {
            user: 4,
            run: 1,
            vars: Some(&vars),
        };
        assert_eq!(t.expand(&scope), "csrf=t0k&u=4");
        assert_eq!(t.display(), "csrf={{csrf}}&u={{user}}");
        assert!(valid_name("csrf") && !valid_name("user") && !valid_name("a b"));
    }
}
