//! One HTTP/1.1 request on a connection of its own, split where [`super::Sync`] says: the
//! part sent before the barrier, and the part held back until it opens.
//!
//! The request is written by hand — request line, headers, `Content-Length`,
//! `Connection: close`, body — because where its bytes go out is the point: a client library
//! decides when to write, this gate must. The answer is read back until the server closes the
//! connection (or its `Content-Length` is in): its status, its `Server-Timing` and the start
//! of its body are kept.

use std::time::{Duration, Instant};

use hyper::header::HeaderName;
use hyper::http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::tls::{self, Io};

/// The most of an answer read: its head and the start of its body.
pub const MAX_ANSWER: usize = 64 * 1024;

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The `Server-Timing` header, when the server sent one.
    pub server_timing: Option<String>,
    /// The body, or as much of it as came within [`MAX_ANSWER`] bytes of the answer.
    pub body: Vec<u8>,
}

/// The bytes of one request.
pub fn encode(
    method: &Method,
    path_and_query: &str,
    authority: &str,
    headers: &[(HeaderName, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {path_and_query} HTTP/1.1\r\n");
    if !headers.iter().any(|(name, _)| name == hyper::header::HOST) {
        head.push_str(&format!("host: {authority}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    // A request that may carry a body says how long it is, even when empty: the server must
    // know where it ends without waiting for the connection to close.
    if !body.is_empty() || !matches!(*method, Method::GET | Method::HEAD) {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A connected request with its first part already written.
pub struct Held {
    stream: Box<dyn Io>,
    rest: Vec<u8>,
}

impl Held {
    /// Connects to `host:port` (over TLS with `tls`, ALPN `http/1.1`) and writes all of
    /// `bytes` but the last `hold`, flushed, within `deadline`. Over TLS, the held byte goes in
    /// a record of its own: the server cannot decrypt it, let alone parse it, before it comes.
    pub async fn pre_send(
        host: &str,
        port: u16,
        tls: Option<&TlsConnector>,
        bytes: Vec<u8>,
        hold: usize,
        deadline: Duration,
    ) -> Result<Held, String> {
        let work = async {
            // The pre-sent part leaves now, not coalesced with the held byte later.
            let mut stream = tls::open(host, port, tls, b"http/1.1").await?;
            let split = bytes.len().saturating_sub(hold);
            stream
                .write_all(&bytes[..split])
                .await
                .map_err(|e| e.to_string())?;
            stream.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(Held {
                stream,
                rest: bytes[split..].to_vec(),
            })
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(Ok(held)) => Ok(held),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(deadline)
            )),
        }
    }

    /// Writes what was held back (once); returns when it was written.
    pub async fn release(&mut self) -> std::io::Result<Instant> {
        let rest = std::mem::take(&mut self.rest);
        if !rest.is_empty() {
            self.stream.write_all(&rest).await?;
        }
        let released = Instant::now();
        self.stream.flush().await?;
        Ok(released)
    }

    /// Reads the answer: until the server closes, or its head and `Content-Length` are in.
    pub async fn answer(mut self) -> Result<Answer, String> {
        let mut buffer = Vec::with_capacity(4096);
        let mut chunk = [0u8; 8192];
        loop {
            let read = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| e.to_string())?;
            buffer.extend_from_slice(&chunk[..read]);
            match parse(&buffer) {
                Parsed::Complete(answer) => return Ok(answer),
                Parsed::Head(answer) if read == 0 || buffer.len() >= MAX_ANSWER => {
                    return Ok(answer);
                }
                Parsed::Partial if read == 0 => {
                    return Err(if buffer.is_empty() {
                        "the server closed the connection without an answer".to_owned()
                    } else {
                        "the server closed the connection in the middle of its answer".to_owned()
                    });
                }
                Parsed::Invalid(why) => return Err(format!("not an HTTP answer: {why}")),
                Parsed::Head(_) | Parsed::Partial => {}
            }
        }
    }
}

enum Parsed {
    /// The head and the whole body its `Content-Length` announced.
    Complete(Answer),
    /// The head; the body goes on (or its length is not announced).
    Head(Answer),
    Partial,
    Invalid(String),
}

fn parse(buffer: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buffer) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(error) => return Parsed::Invalid(error.to_string()),
    };
    let Some(status) = response.code else {
        return Parsed::Invalid("no status".to_owned());
    };
    let find = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::to_owned)
    };
    let length = find("content-length").and_then(|v| v.trim().parse::<usize>().ok());
    let body = &buffer[head..];
    let answer = |body: &[u8]| Answer {
        status,
        server_timing: find("server-timing"),
        body: body.to_vec(),
    };
    match length {
        Some(length) if body.len() >= length => Parsed::Complete(answer(&body[..length])),
        _ => Parsed::Head(answer(body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_says_its_length_and_that_the_connection_closes() {
        let bytes = encode(
            &Method::POST,
            "/v1/orders?x=1",
            "127.0.0.1:8000",
            &[(hyper::header::CONTENT_TYPE, "application/json".to_owned())],
            b"{}",
        );
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "POST /v1/orders?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8000\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
        );
        let get = String::from_utf8(encode(&Method::GET, "/", "h", &[], b"")).unwrap();
        assert!(!get.contains("content-length"), "{get}");
    }

    #[test]
    fn an_answer_is_complete_once_its_announced_body_is_in() {
        let head = b"HTTP/1.1 409 Conflict\r\ncontent-length: 4\r\nServer-Timing: arrival;desc=\"9\"\r\n\r\n";
        let mut whole = head.to_vec();
        whole.extend_from_slice(b"gone");
        match parse(&whole) {
            Parsed::Complete(answer) => {
                assert_eq!(answer.status, 409);
                assert_eq!(answer.server_timing.as_deref(), Some("arrival;desc=\"9\""));
                assert_eq!(answer.body, b"gone");
            }
            _ => panic!("complete"),
        }
        assert!(matches!(parse(head), Parsed::Head(_)));
        assert!(matches!(parse(b"HTTP/1.1 20"), Parsed::Partial));
        assert!(matches!(parse(b"SSH-2.0\r\n\r\n"), Parsed::Invalid(_)));
    }
}
