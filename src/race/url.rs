//! `--url`, parsed once: where every request of the burst goes — the scheme, the host, the port
//! and the authority, fixed — and its path and query, a template expanded per user. Placeholders
//! belong in the path and the query: a burst goes to one server.

use super::template::{Parsing, Scope, Template};
use crate::error::InputError;
use crate::sync::delivery::Origin;

/// A checked `--url`.
#[derive(Debug, Clone)]
pub struct EndpointUrl {
    /// `https://`: over TLS.
    pub https: bool,
    pub origin: Origin,
    /// The path and query (`/v1/orders?sku={{user}}`), expanded per user.
    pub path: Template,
    /// The whole URL as given, for display (no `{{env:…}}` value shown).
    whole: Template,
}

impl EndpointUrl {
    /// Parses `text` (placeholders checked, `{{env:…}}` values added to `secrets`): an
    /// `http://` or `https://` URL with a host, without credentials (they belong in a header,
    /// from the environment: a URL is printed, and sits on command lines), and without
    /// placeholders in its authority.
    pub fn parse(text: &str, flag: &str, parsing: &mut Parsing<'_>) -> Result<Self, InputError> {
        let bad = |why: String| InputError::Invalid(why);
        let whole = Template::parse(text, flag, parsing)?;
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            bad(format!(
                "{flag} is not a URL: no scheme (http:// or https://)"
            ))
        })?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            other => {
                return Err(bad(format!(
                    "{flag} must be http:// or https://, not {other}://"
                )));
            }
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains("{{") {
            return Err(bad(format!(
                "{flag}: placeholders go in the path and the query, not in the host: a burst goes to one server"
            )));
        }
        let base = url::Url::parse(&format!("{scheme}://{authority}/"))
            .map_err(|e| bad(format!("{flag} is not a URL: {e}")))?;
        if base.host_str().is_none_or(str::is_empty) {
            return Err(bad(format!("{flag} has no host")));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad(format!(
                "{flag} must not carry credentials: send them in a header from the environment, e.g. -H 'Authorization: Bearer {{{{env:TOKEN}}}}'"
            )));
        }
        let path = path.split('#').next().unwrap_or_default();
        let path = if path.is_empty() || path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        let path = Template::parse(&path, flag, parsing)?;
        // A request line carries the path as written: what a URL parser would rewrite
        // (a space, a non-ASCII character) must be percent-encoded by the user.
        let sample = path.expand(&Scope::bare(0, 1));
        let parsed = base
            .join(&sample)
            .map_err(|e| bad(format!("{flag} is not a URL: {e}")))?;
        let mut normal = parsed.path().to_owned();
        if let Some(query) = parsed.query() {
            normal.push('?');
            normal.push_str(query);
        }
        if normal != sample {
            return Err(bad(format!(
                "{flag}: the path and query must be written as they are sent, percent-encoded ('{normal}')"
            )));
        }
        Ok(Self {
            https,
            origin: Origin::of(&base),
            path,
            whole,
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// The URL as given, placeholders shown as placeholders.
    pub fn display(&self) -> String {
        self.whole.display()
    }

    /// The whole URL for `scope`.
    pub fn expand(&self, scope: &Scope<'_>) -> String {
        self.whole.expand(scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EndpointUrl, InputError> {
        EndpointUrl::parse(text, "--url", &mut Parsing::new(&|_| None))
    }

    #[test]
    fn the_origin_is_fixed_and_the_path_a_template() {
        let url = parse("https://shop.test:8443/v1/orders/{{user}}?run={{run}}").unwrap();
        assert!(url.https);
        assert_eq!(url.origin.authority, "shop.test:8443");
        assert_eq!(url.origin.port, 8443);
        let expand = |url: EndpointUrl, user, run| url.path.expand(&Scope::bare(user, run));
        assert_eq!(expand(url, 3, 2), "/v1/orders/3?run=2");
        assert_eq!(expand(parse("http://h").unwrap(), 0, 1), "/");
        assert_eq!(expand(parse("http://h?x=1").unwrap(), 0, 1), "/?x=1");
    }

    #[test]
    fn a_url_that_cannot_be_raced_as_given_is_bad_input() {
        for (text, says) in [
            ("ftp://h/x", "must be http:// or https://"),
            ("http://{{user}}.h/x", "not in the host"),
            ("http://me:pw@h/x", "must not carry credentials"),
            ("http:///x", "--url"),
            ("http://h/a b", "percent-encoded"),
            ("h/x", "no scheme"),
        ] {
            let error = parse(text).map(drop).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
