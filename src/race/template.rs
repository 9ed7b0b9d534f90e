//! Request templates: text with placeholders expanded per user — `{{uuid}}` (a fresh v4),
//! `{{user}}` (the 0-based index), `{{run}}` (the run of `--repeat`, from 1) and
//! `{{env:NAME}}` (an environment variable, so that a token never sits on a command line; its
//! value is a secret, masked in every output). Parsed once, before anything is sent: an
//! unknown placeholder or a missing variable is bad input.

use crate::error::InputError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Uuid,
    User,
    Run,
    /// The variable's value, read when the template was parsed.
    Env(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; `flag` names where it came from in errors (`--url`, `-H`, `-d`). The
    /// values of `{{env:NAME}}` are read from `env` and added to `secrets`.
    pub fn parse(
        text: &str,
        flag: &str,
        env: &dyn Fn(&str) -> Option<String>,
        secrets: &mut Vec<String>,
    ) -> Result<Self, InputError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                InputError::Invalid(format!(
                    "{flag}: '{{{{' without its '}}}}' (placeholders: {{{{uuid}}}}, {{{{user}}}}, {{{{run}}}}, {{{{env:NAME}}}})"
                ))
            })?;
            let name = after[..close].trim();
            parts.push(match name {
                "uuid" => Part::Uuid,
                "user" => Part::User,
                "run" => Part::Run,
                _ => match name.strip_prefix("env:") {
                    Some(var) if !var.is_empty() => {
                        let value = env(var).ok_or_else(|| {
                            InputError::Invalid(format!(
                                "{flag}: {{{{env:{var}}}}} names an environment variable that is not set"
                            ))
                        })?;
                        if !value.is_empty() {
                            secrets.push(value.clone());
                        }
                        Part::Env(value)
                    }
                    _ => {
                        return Err(InputError::Invalid(format!(
                            "{flag}: unknown placeholder {{{{{name}}}}} (known: {{{{uuid}}}}, {{{{user}}}}, {{{{run}}}}, {{{{env:NAME}}}})"
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

    /// The text for user `user` of run `run`.
    pub fn expand(&self, user: u32, run: u32) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) | Part::Env(text) => out.push_str(text),
                Part::Uuid => out.push_str(&uuid::Uuid::new_v4().to_string()),
                Part::User => out.push_str(&user.to_string()),
                Part::Run => out.push_str(&run.to_string()),
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
        let mut secrets = Vec::new();
        let t = Template::parse(
            r#"{"user": {{user}}, "run": {{run}}, "id": "{{uuid}}", "t": "{{env:TOKEN}}"}"#,
            "-d",
            &env,
            &mut secrets,
        )
        .unwrap();
        let a = t.expand(3, 2);
        assert!(a.starts_with(r#"{"user": 3, "run": 2, "id": ""#), "{a}");
        assert!(a.ends_with(r#"", "t": "s3cret"}"#), "{a}");
        assert_ne!(t.expand(3, 2), a, "a fresh uuid each time");
        assert_eq!(secrets, vec!["s3cret".to_owned()]);
        assert!(!t.display().contains("s3cret"), "{}", t.display());
    }

    #[test]
    fn an_unknown_placeholder_an_unset_variable_and_an_unclosed_brace_are_bad_input() {
        let mut secrets = Vec::new();
        for (text, says) in [
            ("{{nope}}", "unknown placeholder {{nope}}"),
            ("{{env:MISSING}}", "not set"),
            ("{{user", "without its"),
        ] {
            let error = Template::parse(text, "-d", &env, &mut secrets).unwrap_err();
            assert!(error.to_string().starts_with("-d: "), "{error}");
            assert!(error.to_string().contains(says), "{error}");
        }
    }
}
