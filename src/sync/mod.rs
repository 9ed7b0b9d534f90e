//! Synchronised delivery: how a burst's requests are released so that they *arrive* together,
//! not merely leave together.
//!
//! A barrier releases the users in the same instant, but each request is then written, sent
//! and parsed on its own — over a loopback that spreads their arrival over hundreds of
//! microseconds, more than the race window of a real handler (the gap between its read and its
//! write). So everything that can be sent early is:
//!
//! - [`Sync::None`]: each request written whole when the barrier opens (what load tools do);
//! - [`Sync::SinglePacket`] (HTTP/2, Kettle's *single-packet attack*, [`h2`]): every request
//!   a stream of one connection, its final DATA frame held; at the barrier all final frames
//!   leave in one write, one TCP segment;
//! - [`Sync::LastByte`] (HTTP/1.1, James Kettle's *last-byte synchronisation*): the request
//!   line, the headers and all but the final byte of the body are written and flushed before
//!   the barrier, one connection per request; at the barrier only one byte per request is
//!   left to send. A server that waits for `Content-Length` bytes cannot start any of them
//!   before its final byte, so the requests become complete within the time it takes to write
//!   twenty single bytes.
//!
//! The gate is this project's own: a request split where it must be ([`http1::Held`]), its
//! head written and flushed (with `TCP_NODELAY`, so it leaves now, not with the last byte), and
//! every held part written back to back by one task when the barrier opens
//! ([`crate::targets::endpoint`]) — twenty tasks each woken to write its own byte would spread
//! the release over the scheduler's wake-ups, which is what the gate is there to avoid.

pub mod delivery;
pub mod exchange;
pub mod h2;
pub mod http1;
pub mod stats;
pub mod tls;

pub use stats::HttpStats;

use std::time::Duration;

use serde::Serialize;

/// Why a request could not be delivered or its answer read: named as what it is, so that a
/// certificate the client does not trust is not called "does not speak HTTP/2".
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TCP: refused, unreachable, no such host.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed: a certificate not trusted (`--cacert`), a name that does not
    /// match, no protocol in common.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server does not speak HTTP/2 (no `h2` in ALPN, or no answer to its preface).
    #[error("the server does not speak HTTP/2 ({0})")]
    NotH2(String),
    #[error("no answer within {} (--timeout)", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("{}", if *.midway { "the server closed the connection in the middle of its answer" } else { "the server closed the connection without an answer" })]
    Closed { midway: bool },
    /// The server refused the stream (HTTP/2 `REFUSED_STREAM`): over its
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`, or shedding load; it did not process the request.
    #[error("the server refused the stream (REFUSED_STREAM): it did not process the request")]
    RefusedStream,
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("HTTP/2: {0}")]
    H2(String),
    /// The release — the held bytes — could not be written.
    #[error("{0}")]
    Release(String),
}

impl TransportError {
    /// The line a request's failure is counted under: `no answer within 3s (--timeout)`, or
    /// `no answer: <why>`.
    pub fn no_answer(&self) -> String {
        match self {
            TransportError::Timeout(_) => self.to_string(),
            other => format!("no answer: {other}"),
        }
    }
}

/// A `--sync` the request cannot have (no body to hold back, no HTTP/2): bad input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

impl From<::h2::Error> for TransportError {
    fn from(error: ::h2::Error) -> Self {
        if error.reason() == Some(::h2::Reason::REFUSED_STREAM) {
            return TransportError::RefusedStream;
        }
        if let Some(io) = error.get_io() {
            return TransportError::Io(std::io::Error::new(io.kind(), io.to_string()));
        }
        TransportError::H2(error.to_string())
    }
}

/// `--sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sync {
    /// Each request sent whole when the barrier opens
    None,
    /// All but the final byte of every request sent before the barrier; the final bytes at once
    LastByte,
    /// HTTP/2, every request's final frame in one packet
    SinglePacket,
    /// The best the target allows: single-packet with --http2, else last-byte when the request
    /// has a body
    Auto,
}

impl Sync {
    pub fn name(self) -> &'static str {
        match self {
            Sync::None => "none",
            Sync::LastByte => "last-byte",
            Sync::SinglePacket => "single-packet",
            Sync::Auto => "auto",
        }
    }

    /// The mode a burst of requests with (or without) a body is sent in, over HTTP/2 (`--http2`)
    /// or HTTP/1.1: `auto` becomes single-packet over HTTP/2, last-byte over HTTP/1.1 when there
    /// is a byte to hold back, else none.
    pub fn resolve(self, has_body: bool, http2: bool) -> Result<Sync, Unsupported> {
        match (self, has_body, http2) {
            (Sync::Auto | Sync::SinglePacket, true, true) => Ok(Sync::SinglePacket),
            (Sync::Auto | Sync::LastByte, true, _) => Ok(Sync::LastByte),
            (Sync::Auto, false, _) | (Sync::None, _, _) => Ok(Sync::None),
            (Sync::LastByte | Sync::SinglePacket, false, _) => Err(Unsupported(format!(
                "--sync {} needs a request body to hold its last byte back (-d); --sync none sends body-less requests whole",
                self.name()
            ))),
            (Sync::SinglePacket, true, false) => Err(Unsupported(
                "--sync single-packet needs HTTP/2: add --http2 (prior knowledge over http://), or use --sync last-byte".to_owned(),
            )),
        }
    }
}

/// Why single-packet could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// `--sync single-packet` asked for by name, and the server does not speak HTTP/2: bad
    /// input, said before anything is sent.
    #[error(
        "--sync single-packet: the server at {authority} does not speak HTTP/2 ({why}); --sync last-byte synchronises over HTTP/1.1"
    )]
    NoH2 { authority: String, why: String },
    /// The server could not be reached at all (connect, TLS, time-out): no fallback would
    /// reach it either.
    #[error("cannot reach {authority}: {source} (nothing was sent)")]
    Unreachable {
        authority: String,
        #[source]
        source: TransportError,
    },
}

impl SettleError {
    /// Bad input (exit 2) when the server lacks what was asked for by name; a runtime error
    /// (exit 1) when it could not be reached.
    pub fn surface(self) -> anyhow::Error {
        match self {
            SettleError::NoH2 { .. } => {
                anyhow::Error::new(crate::error::InputError::Invalid(self.to_string()))
            }
            SettleError::Unreachable { .. } => anyhow::Error::new(self),
        }
    }
}

/// Single-packet needs a server that speaks HTTP/2: asked for by name (`asked`), a server at
/// `origin` that does not is bad input, said before anything is sent; under `auto`, the burst
/// falls back to last-byte over HTTP/1.1, with a note saying so. A server that cannot be
/// reached, or whose certificate is not trusted, is said as such — not taken for one without
/// HTTP/2 — within the one `deadline` (the probe is not a second `--timeout`).
pub async fn settle_single_packet(
    origin: &delivery::Origin,
    tls: Option<&tokio_rustls::TlsConnector>,
    deadline: std::time::Duration,
    asked: Sync,
) -> Result<(Sync, Option<String>), SettleError> {
    let (host, port) = (origin.host.as_str(), origin.port);
    let authority = format!("{host}:{port}");
    let why = match h2::speaks_h2(host, port, tls, deadline).await {
        Ok(()) => return Ok((Sync::SinglePacket, None)),
        Err(TransportError::NotH2(why)) => why,
        Err(source) => return Err(SettleError::Unreachable { authority, source }),
    };
    if asked == Sync::SinglePacket {
        return Err(SettleError::NoH2 { authority, why });
    }
    let note = format!(
        "note: the server at {authority} does not speak HTTP/2 ({why}); --sync auto falls back to last-byte over HTTP/1.1"
    );
    Ok((Sync::LastByte, Some(note)))
}

/// How close together a burst was released and arrived, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    /// Last minus first.
    pub max_us: u64,
    /// The median gap between consecutive arrivals (or releases).
    pub p50_gap_us: u64,
    /// How many instants it was measured over.
    pub count: usize,
}

impl Spread {
    /// The spread of `instants` (any unit-consistent microsecond values); `None` for fewer
    /// than two.
    pub fn of(mut instants: Vec<u64>) -> Option<Spread> {
        if instants.len() < 2 {
            return None;
        }
        instants.sort_unstable();
        let mut gaps: Vec<u64> = instants.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_unstable();
        Some(Spread {
            max_us: instants[instants.len() - 1] - instants[0],
            p50_gap_us: gaps[gaps.len() / 2],
            count: instants.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_holds_the_last_byte_when_there_is_a_body_and_says_what_it_cannot_do() {
        assert_eq!(Sync::Auto.resolve(true, false), Ok(Sync::LastByte));
        assert_eq!(Sync::Auto.resolve(true, true), Ok(Sync::SinglePacket));
        assert_eq!(Sync::Auto.resolve(false, false), Ok(Sync::None));
        assert!(Sync::LastByte.resolve(false, false).is_err());
        assert!(Sync::SinglePacket.resolve(true, false).is_err());
        assert_eq!(Sync::None.resolve(true, true), Ok(Sync::None));
    }

    #[test]
    fn the_spread_is_last_minus_first_and_the_median_gap() {
        let spread = Spread::of(vec![30, 10, 11, 15]).unwrap();
        assert_eq!(spread.max_us, 20);
        assert_eq!(spread.p50_gap_us, 4, "gaps 1, 4, 15");
        assert!(Spread::of(vec![5]).is_none());
    }
}
