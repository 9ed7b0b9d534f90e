//! Every HTTP error is one `application/problem+json` body (RFC 9457): `type`, `title`,
//! `status`, `detail`, and fields that help the client (`night`, `field`, …). The status of each
//! case is decided here, in one place; a refusal of the booking itself (sold out, lock busy) is
//! an outcome mapped in [`super::bookings`], never an error.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One problem (RFC 9457): what went wrong, for a client to read and a program to branch on
/// (`type`). Extension members, when they help: `field` (the JSON field or header at fault),
/// `night`, `mode`, `checks`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem, relative to the API (`/problems/sold-out`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    #[serde(serialize_with = "as_u16")]
    #[schema(value_type = u16)]
    pub status: StatusCode,
    pub detail: String,
    /// Extension members (`night`, `field`, `mode`, …).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: Map<String, Value>,
    /// Seconds after which a retry may succeed (503): sent as `Retry-After`, not in the body.
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

fn as_u16<S: serde::Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(status.as_u16())
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("{}{kind}", super::wire::PROBLEM_PREFIX),
            title: title.to_owned(),
            status,
            detail: detail.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(field: Option<&str>, detail: impl Into<String>) -> Self {
        let problem = Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        );
        match field {
            Some(field) => problem.with("field", field),
            None => problem,
        }
    }

    pub fn unprocessable(kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, kind, title, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// A failure of this server or its database. The detail is generic on purpose: the cause
    /// (which may hold SQL or a server's address) goes to the log, never to the client.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "the booking could not be processed; see the server's log",
        )
    }

    /// 413: a body over [`BODY_LIMIT`](super::BODY_LIMIT).
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("the body is larger than {} bytes", super::BODY_LIMIT),
        )
    }

    pub fn unavailable(kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, kind, title, detail).retry_after(1)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry_after = self.retry_after;
        let mut response = (status, Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A body that is not the JSON the endpoint takes: 415 without a JSON content type, 413 over
/// the size limit, 400 for malformed JSON or a missing or mistyped field (serde names it).
impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the booking as JSON, with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(rejection) => {
                let status = rejection.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::payload_too_large()
                } else {
                    Problem::bad_request(None, rejection.body_text())
                }
            }
            JsonRejection::JsonSyntaxError(error) => Problem::bad_request(
                None,
                format!("the body is not valid JSON: {}", error.body_text()),
            ),
            JsonRejection::JsonDataError(error) => {
                let text = error.body_text();
                Problem::bad_request(field_of(&text).as_deref(), text)
            }
            other => Problem::bad_request(None, other.body_text()),
        }
    }
}

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        Problem::bad_request(None, rejection.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        let text = rejection.body_text();
        Problem::bad_request(field_of(&text).as_deref(), text)
    }
}

/// The field a serde error names: `…: start_date: input contains invalid characters …` names
/// `start_date`, and `missing field \`user_id\`` names `user_id`.
fn field_of(message: &str) -> Option<String> {
    if let Some((_, rest)) = message.split_once("missing field `") {
        return rest.split('`').next().map(str::to_owned);
    }
    let (_, rest) = message.split_once("target type: ")?;
    let (path, _) = rest.split_once(": ")?;
    let field = path.trim();
    (!field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| field.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_is_read_from_serde_messages() {
        assert_eq!(
            field_of("Failed to deserialize the JSON body into the target type: missing field `user_id` at line 1 column 2").as_deref(),
            Some("user_id")
        );
        assert_eq!(
            field_of("Failed to deserialize the JSON body into the target type: start_date: input contains invalid characters at line 1 column 80").as_deref(),
            Some("start_date")
        );
        assert_eq!(field_of("something else"), None);
    }
}
