//! One HTTP/1.1 request on a connection of its own, split where [`super::Sync`] says: the
//! part sent before the barrier, and the part held back until it opens.
//!
//! The request is written by hand — request line, headers, `Content-Length`,
//! `Connection: close`, body — because where its bytes go out is the point: a client library
//! decides when to write, this gate must. The answer is read as HTTP/1.1 frames it (RFC 9112
//! §6.3): interim 1xx answers skipped, then the body by `Content-Length`, by chunks, or to the
//! connection's end — complete when its framing says so, whether or not the server closes.
//! Its status, its `Server-Timing` and the start of its body are kept.

use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use hyper::header::HeaderName;
use hyper::http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::TransportError;
use super::tls::{self, Io};

/// The most of an answer read: its head and the start of its body.
pub const MAX_ANSWER: usize = 64 * 1024;

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Every header of the final answer, in order, names lower-cased (values that are not
    /// UTF-8 are left out).
    pub headers: Vec<(String, String)>,
    /// The body, or as much of it as came within [`MAX_ANSWER`] bytes of the answer.
    pub body: Vec<u8>,
}

impl Answer {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (any case), in order: `Set-Cookie` comes several times.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Server-Timing`, when the server sent one.
    pub fn server_timing(&self) -> Option<&str> {
        self.header("server-timing")
    }
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

/// The most of a response head (status line and headers) read before giving up on it.
pub const MAX_HEAD: usize = 64 * 1024;

/// A connected request with its first part already written.
pub struct Held {
    stream: Box<dyn Io>,
    /// The TCP socket under it (TLS or not), for what only the kernel knows.
    fd: std::os::fd::RawFd,
    rest: Vec<u8>,
    /// Everything needed to open the connection again and pre-send the same bytes, should the
    /// server close it before the release ([`Held::reopen`]).
    again: Again,
    /// Bytes the server sent before the release (an early answer): read once, kept here.
    early: Vec<u8>,
    /// Times the connection was opened again because the server dropped it.
    reopened: u32,
}

/// Tries of a pre-send whose connection the server dropped, each after a pause a little longer
/// than the one before ([`PRE_SEND_PAUSE`] × the try): a server whose accept queue was full
/// has had time to drain it.
const PRE_SEND_TRIES: u32 = 5;
const PRE_SEND_PAUSE: Duration = Duration::from_millis(10);

/// Whether the server dropped the connection (reset or closed it) rather than refused it.
fn dropped(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::UnexpectedEof
    )
}

/// Bytes written on `fd` that the peer's TCP has not acknowledged yet (`SIOCOUTQ`, which is `TIOCOUTQ`); `None`
/// where the kernel cannot say.
#[cfg(target_os = "linux")]
fn unacknowledged(fd: std::os::fd::RawFd) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one `int` through the pointer, which points at `queued`; `fd` is
    // this connection's open socket.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    (rc == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
fn unacknowledged(_fd: std::os::fd::RawFd) -> Option<usize> {
    None
}

struct Again {
    host: String,
    port: u16,
    tls: Option<TlsConnector>,
    bytes: Vec<u8>,
    hold: usize,
    deadline: Duration,
    /// A `HEAD` request: its answer has no body, whatever its headers say.
    head: bool,
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
    ) -> Result<Held, TransportError> {
        let head = bytes.starts_with(b"HEAD ");
        let again = Again {
            host: host.to_owned(),
            port,
            tls: tls.cloned(),
            bytes,
            hold,
            deadline,
            head,
        };
        // A connection the server resets as it accepts it (a full accept queue) fails the
        // pre-send write: opened again, a bounded number of times.
        let mut reopened = 0;
        let (stream, fd, rest) = loop {
            match again.open().await {
                Err(TransportError::Io(e) | TransportError::Connect(e))
                    if reopened < PRE_SEND_TRIES && dropped(&e) =>
                {
                    reopened += 1;
                    tokio::time::sleep(PRE_SEND_PAUSE * reopened).await;
                }
                other => break other?,
            }
        };
        Ok(Held {
            stream,
            fd,
            rest,
            again,
            early: Vec::new(),
            reopened,
        })
    }

    /// How many times the connection was opened again before it held.
    pub fn reopened(&self) -> u32 {
        self.reopened
    }

    /// Whether the server closed (or reset) this connection before its request was complete
    /// — a read that does not wait; a live connection that sent nothing is pending — or never
    /// took it: bytes pre-sent that its TCP has not acknowledged. A listener whose accept
    /// queue was full when the handshake ended drops the connection's segments (it is not
    /// established on the server's side) and resets it later, when the burst comes; on
    /// loopback, a taken connection acknowledges within microseconds.
    ///
    /// A server that *answered* already is not closed: it acted on the request without
    /// waiting for its body (a handler that never reads it), so the request was processed —
    /// sending it again would process it twice. Its answer is kept ([`Held::answered_early`]).
    pub fn closed_early(&mut self) -> bool {
        if !self.early.is_empty() {
            return false;
        }
        if unacknowledged(self.fd).is_some_and(|queued| queued > 0) {
            return true;
        }
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).now_or_never() {
            None => false,
            Some(Ok(0) | Err(_)) => true,
            Some(Ok(n)) => {
                self.early.extend_from_slice(&chunk[..n]);
                false
            }
        }
    }

    /// Whether the server answered before the held bytes were sent: it did not wait for the
    /// request to be complete, so the release could not hold it back.
    pub fn answered_early(&self) -> bool {
        !self.early.is_empty()
    }

    /// Opens the connection again and pre-sends the same bytes, held back as before.
    pub async fn reopen(&mut self) -> Result<(), TransportError> {
        let (stream, fd, rest) = self.again.open().await?;
        self.stream = stream;
        self.fd = fd;
        self.rest = rest;
        self.early.clear();
        self.reopened += 1;
        Ok(())
    }

    /// Writes what was held back (once); returns when it was written. A connection already
    /// answered takes the bytes or not: its answer is in, and the server may have closed.
    pub async fn release(&mut self) -> std::io::Result<Instant> {
        let rest = std::mem::take(&mut self.rest);
        let written = async {
            if !rest.is_empty() {
                self.stream.write_all(&rest).await?;
            }
            let released = Instant::now();
            self.stream.flush().await?;
            Ok(released)
        }
        .await;
        match written {
            Err(_) if !self.early.is_empty() => Ok(Instant::now()),
            other => other,
        }
    }

    /// Reads the final answer: interim (1xx) answers skipped, the body read as its framing
    /// says — none for `HEAD`, 204 and 304, `Content-Length` bytes, chunks up to the last, or
    /// until the server closes when it says neither — whether or not the server then closes.
    pub async fn answer(mut self) -> Result<Answer, TransportError> {
        let mut reader = Reader {
            buffer: std::mem::take(&mut self.early),
            scanned: 0,
        };
        let stream = &mut self.stream;
        loop {
            let head = reader.head(stream).await?;
            if (100..200).contains(&head.status) && head.status != 101 {
                // An interim answer (100 Continue, 103 Early Hints): the final one follows.
                continue;
            }
            let body = if self.again.head || matches!(head.status, 204 | 304) {
                Vec::new()
            } else {
                match head.framing {
                    Framing::Chunked => reader.chunked(stream).await?,
                    Framing::Length(length) => reader.length(stream, length).await?,
                    Framing::UntilClose => reader.until_close(stream).await,
                }
            };
            return Ok(Answer {
                status: head.status,
                headers: head.headers,
                body,
            });
        }
    }
}

impl Again {
    async fn open(&self) -> Result<(Box<dyn Io>, std::os::fd::RawFd, Vec<u8>), TransportError> {
        let work = async {
            // The pre-sent part leaves now, not coalesced with the held byte later.
            let tcp = tls::tcp(&self.host, self.port).await?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
            let mut stream: Box<dyn Io> = match &self.tls {
                Some(connector) => {
                    Box::new(tls::connect(connector, &self.host, tcp, b"http/1.1").await?)
                }
                None => Box::new(tcp),
            };
            let split = self.bytes.len().saturating_sub(self.hold);
            stream
                .write_all(&self.bytes[..split])
                .await
                .map_err(TransportError::Io)?;
            stream.flush().await.map_err(TransportError::Io)?;
            Ok::<_, TransportError>((stream, fd, self.bytes[split..].to_vec()))
        };
        tokio::time::timeout(self.deadline, work)
            .await
            .map_err(|_| TransportError::Timeout(self.deadline))?
    }
}

/// How a response's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Chunked,
    Length(usize),
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    framing: Framing,
}

/// The bytes read from a connection and not yet consumed.
struct Reader {
    buffer: Vec<u8>,
    /// How far the buffer was searched for the end of a head: each byte is searched once, and
    /// the head parsed once, when its blank line is in.
    scanned: usize,
}

impl Reader {
    /// Reads more; `Ok(0)` when the server closed.
    async fn fill(&mut self, stream: &mut Box<dyn Io>) -> Result<usize, TransportError> {
        let mut chunk = [0u8; 8192];
        let read = stream.read(&mut chunk).await.map_err(TransportError::Io)?;
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(read)
    }

    /// The next response head, consumed from the buffer.
    async fn head(&mut self, stream: &mut Box<dyn Io>) -> Result<Head, TransportError> {
        let end = loop {
            let from = self.scanned.saturating_sub(3);
            if let Some(at) = find(&self.buffer[from..], b"\r\n\r\n") {
                break from + at + 4;
            }
            self.scanned = self.buffer.len();
            if self.buffer.len() > MAX_HEAD {
                return Err(TransportError::Protocol(format!(
                    "the answer's head is over {} KiB",
                    MAX_HEAD / 1024
                )));
            }
            if self.fill(stream).await? == 0 {
                return Err(TransportError::Closed {
                    midway: !self.buffer.is_empty(),
                });
            }
        };
        let head = parse_head(&self.buffer[..end])?;
        self.buffer.drain(..end);
        self.scanned = 0;
        Ok(head)
    }

    /// A body of `length` bytes; the first [`MAX_ANSWER`] kept.
    async fn length(
        &mut self,
        stream: &mut Box<dyn Io>,
        length: usize,
    ) -> Result<Vec<u8>, TransportError> {
        let mut kept = Vec::new();
        let mut left = length;
        loop {
            let take = left.min(self.buffer.len());
            keep(&mut kept, &self.buffer[..take]);
            self.buffer.drain(..take);
            left -= take;
            if left == 0 {
                return Ok(kept);
            }
            if self.fill(stream).await? == 0 {
                return Err(TransportError::Closed { midway: true });
            }
        }
    }

    /// A body to the end of the connection; whatever came, if it ends in an error.
    async fn until_close(&mut self, stream: &mut Box<dyn Io>) -> Vec<u8> {
        let mut kept = Vec::new();
        loop {
            keep(&mut kept, &self.buffer);
            self.buffer.clear();
            match self.fill(stream).await {
                Ok(0) | Err(_) => return kept,
                Ok(_) => {}
            }
        }
    }

    /// A chunked body, to its last chunk and the trailers' blank line.
    async fn chunked(&mut self, stream: &mut Box<dyn Io>) -> Result<Vec<u8>, TransportError> {
        let mut kept = Vec::new();
        let mut state = Chunk::Size;
        loop {
            let before = (self.buffer.len(), state);
            state = self.chunk_step(state, &mut kept)?;
            if state == Chunk::Done {
                return Ok(kept);
            }
            // No progress: the next step needs more bytes.
            if (self.buffer.len(), state) == before {
                if self.buffer.len() > MAX_HEAD {
                    return Err(TransportError::Protocol(
                        "a chunk-size or trailer line over 64 KiB".to_owned(),
                    ));
                }
                if self.fill(stream).await? == 0 {
                    return Err(TransportError::Closed { midway: true });
                }
            }
        }
    }

    /// One step of the chunked decoding on the buffer, consuming what it used.
    fn chunk_step(&mut self, state: Chunk, kept: &mut Vec<u8>) -> Result<Chunk, TransportError> {
        let bad = |why: &str| TransportError::Protocol(format!("bad chunked body: {why}"));
        Ok(match state {
            Chunk::Size | Chunk::Trailer => {
                let Some(end) = find(&self.buffer, b"\r\n") else {
                    return Ok(state);
                };
                let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 2);
                if state == Chunk::Trailer {
                    return Ok(if line.is_empty() {
                        Chunk::Done
                    } else {
                        Chunk::Trailer
                    });
                }
                let size = line.split(';').next().unwrap_or_default().trim();
                match usize::from_str_radix(size, 16) {
                    Ok(0) => Chunk::Trailer,
                    Ok(n) => Chunk::Data(n),
                    Err(_) => return Err(bad("a chunk size that is not hexadecimal")),
                }
            }
            Chunk::Data(left) => {
                let take = left.min(self.buffer.len());
                keep(kept, &self.buffer[..take]);
                self.buffer.drain(..take);
                if take == left {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - take)
                }
            }
            Chunk::DataEnd => {
                if self.buffer.len() < 2 {
                    return Ok(state);
                }
                if &self.buffer[..2] != b"\r\n" {
                    return Err(bad("a chunk not followed by CRLF"));
                }
                self.buffer.drain(..2);
                Chunk::Size
            }
            Chunk::Done => Chunk::Done,
        })
    }
}

/// Where the chunked decoding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(usize),
    DataEnd,
    Trailer,
    Done,
}

/// Appends up to [`MAX_ANSWER`] bytes in all.
fn keep(kept: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_ANSWER.saturating_sub(kept.len());
    kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A complete head (its blank line included).
fn parse_head(bytes: &[u8]) -> Result<Head, TransportError> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(TransportError::Protocol("an incomplete head".to_owned()));
        }
        Err(error) => {
            return Err(TransportError::Protocol(format!(
                "not an HTTP answer: {error}"
            )));
        }
    }
    let status = response
        .code
        .ok_or_else(|| TransportError::Protocol("not an HTTP answer: no status".to_owned()))?;
    let find = |name: &str| {
        response
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
            .collect::<Vec<_>>()
    };
    let chunked = find("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    let framing = if chunked {
        Framing::Chunked
    } else {
        match find("content-length").first() {
            Some(v) => Framing::Length(v.parse().map_err(|_| {
                TransportError::Protocol(format!("a Content-Length that is not a number: {v}"))
            })?),
            None => Framing::UntilClose,
        }
    };
    let headers = response
        .headers
        .iter()
        .filter_map(|h| {
            let value = std::str::from_utf8(h.value).ok()?;
            Some((h.name.to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    Ok(Head {
        status,
        headers,
        framing,
    })
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
    fn a_head_says_its_framing_and_a_bad_one_is_named() {
        let head = parse_head(b"HTTP/1.1 409 Conflict\r\ncontent-length: 4\r\nServer-Timing: arrival;desc=\"9\"\r\n\r\n").unwrap();
        assert_eq!(head.status, 409);
        assert_eq!(head.framing, Framing::Length(4));
        let server_timing = head.headers.iter().find(|(n, _)| n == "server-timing");
        assert_eq!(
            server_timing.map(|(_, v)| v.as_str()),
            Some("arrival;desc=\"9\"")
        );
        let chunked =
            parse_head(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(chunked.framing, Framing::Chunked);
        let open = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
        assert_eq!(open.framing, Framing::UntilClose);
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn a_chunked_body_is_decoded_to_its_last_chunk_and_trailers() {
        let mut reader = Reader {
            buffer: b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT".to_vec(),
            scanned: 0,
        };
        let mut kept = Vec::new();
        let mut state = Chunk::Size;
        for _ in 0..20 {
            state = reader.chunk_step(state, &mut kept).unwrap();
            if state == Chunk::Done {
                break;
            }
        }
        assert_eq!(state, Chunk::Done);
        assert_eq!(kept, b"Wikipedia");
        assert_eq!(reader.buffer, b"NEXT", "nothing past the body is consumed");
    }
}
