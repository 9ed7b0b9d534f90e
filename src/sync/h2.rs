//! The single-packet attack over HTTP/2: every user's request a stream of one connection, its
//! HEADERS and all of its body but the last byte sent before the barrier; then every stream's
//! final DATA frame (END_STREAM) written in **one** write, so that the server reads them from
//! one TCP segment and cannot start one request before the others are complete.
//!
//! The one write is this project's own gate ([`Gate`]), placed *below* HTTP/2, on the socket:
//! while it is armed, whatever the `h2` connection task writes is kept in a buffer instead of
//! being sent; when it opens, the buffer goes to the socket in one `write`. Left to itself, the
//! connection task would write each final frame as soon as it is queued — twenty small writes,
//! twenty segments, each a request the server can start alone.
//!
//! The connection is warmed first (a PING round trip, after the SETTINGS exchange), so that the
//! released segment does not queue behind the handshake; the pre-sent frames are confirmed
//! delivered by a second PING before the gate is armed.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::http::{Method, Request};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use tokio_rustls::TlsConnector;

use super::TransportError;
use super::http1::Answer;
use super::tls::{self, Io};

/// Streams per HTTP/2 connection under single-packet: within every common server's
/// `SETTINGS_MAX_CONCURRENT_STREAMS` (Apache 100, nginx 128, Go 250) and `h2`'s own assumption
/// before the server's SETTINGS, and 1,000 bytes of final frames — one segment even on a
/// 1,500-byte network.
pub const STREAMS_PER_PACKET: usize = 100;

/// The size of one held final frame: a 9-byte frame header and its one byte of data.
const FINAL_FRAME: usize = 10;

#[derive(Debug, Default)]
struct GateState {
    /// Writes are being held.
    armed: bool,
    /// Bytes HTTP/2 wrote since the gate was armed, before TLS (if any) sealed them: how the
    /// gate knows every final frame is in, whatever records they became.
    plain: usize,
    held: Vec<u8>,
    /// Opened: the held bytes go out before anything else.
    opened: bool,
    /// When the held bytes were written, once they were.
    released: Option<Instant>,
}

/// Holds the connection's writes while armed; releases them in one write.
#[derive(Debug, Default, Clone)]
pub struct Gate(Arc<Mutex<GateState>>);

impl Gate {
    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn arm(&self) {
        self.state().armed = true;
    }

    pub fn held(&self) -> usize {
        self.state().held.len()
    }

    fn plain(&self) -> usize {
        self.state().plain
    }

    /// Opens the gate: the next write of the connection sends the held bytes first, whole.
    pub fn open(&self) {
        let mut state = self.state();
        state.armed = false;
        state.opened = true;
    }

    pub fn released(&self) -> Option<Instant> {
        self.state().released
    }
}

/// A TCP stream whose writes go through a [`Gate`].
pub struct Gated {
    inner: TcpStream,
    gate: Gate,
}

/// Counts what HTTP/2 writes while the gate is armed (above TLS, if any).
struct Counted {
    inner: Box<dyn Io>,
    gate: Gate,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            let mut state = self.gate.state();
            if state.armed {
                state.plain += n;
            }
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Gated {
    /// Writes the held bytes, if the gate was opened; `Ready(Ok)` once none are left.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.gate.state();
        if !state.opened {
            return Poll::Ready(Ok(()));
        }
        while !state.held.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &state.held) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    state.held.drain(..n);
                    if state.released.is_none() {
                        state.released = Some(Instant::now());
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        state.opened = false;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Gated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Gated {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.drain(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        {
            let mut state = self.gate.state();
            if state.armed {
                state.held.extend_from_slice(buf);
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.drain(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if self.gate.state().armed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One request of the burst.
pub struct Stream {
    response: h2::client::ResponseFuture,
}

/// One connection's share of the burst: its streams pre-sent, their final frames held.
pub struct Packet {
    gate: Gate,
    ping: h2::PingPong,
    pub streams: Vec<Stream>,
}

/// What a request is, for [`Packet::prepare`].
pub struct Prepared {
    pub method: Method,
    pub uri: String,
    pub headers: Vec<(hyper::header::HeaderName, String)>,
    pub body: Vec<u8>,
}

/// The server's answer to a connection preface that was not HTTP/2.
fn not_h2(e: h2::Error) -> TransportError {
    match TransportError::from(e) {
        TransportError::H2(why) | TransportError::Protocol(why) => TransportError::NotH2(why),
        TransportError::Io(io) => TransportError::NotH2(io.to_string()),
        other => other,
    }
}

impl Packet {
    /// Opens a connection to `host:port` with HTTP/2 prior knowledge, warms it, sends as many
    /// requests as the server's `SETTINGS_MAX_CONCURRENT_STREAMS` allows (at most
    /// [`STREAMS_PER_PACKET`]) — HEADERS and all of the
    /// body but the last byte — and queues their final frames behind the armed gate. Returns
    /// the requests it had no room for: they go on another connection. Fails when the server
    /// does not speak HTTP/2.
    pub async fn prepare(
        host: &str,
        port: u16,
        tls: Option<&TlsConnector>,
        mut requests: Vec<Prepared>,
        deadline: Duration,
    ) -> Result<(Packet, Vec<Prepared>), TransportError> {
        let work = async {
            let tcp = tls::tcp(host, port).await?;
            let gate = Gate::default();
            // The gate on the socket, TLS (if any) above it, HTTP/2 above that: the release is
            // one write of whole TLS records.
            let gated = Gated {
                inner: tcp,
                gate: gate.clone(),
            };
            let sealed: Box<dyn Io> = match tls {
                Some(connector) => Box::new(tls::connect(connector, host, gated, b"h2").await?),
                None => Box::new(gated),
            };
            let io = Counted {
                inner: sealed,
                gate: gate.clone(),
            };
            let (client, mut connection) = h2::client::handshake(io).await.map_err(not_h2)?;
            let mut ping = connection.ping_pong().ok_or_else(|| {
                TransportError::H2("no PING handle on a fresh connection".to_owned())
            })?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            // Warm: the SETTINGS exchanged and a round trip made before anything is held.
            ping.ping(h2::Ping::opaque()).await.map_err(not_h2)?;
            let mut client = client.ready().await?;
            // The server's SETTINGS are in: as many streams as it allows at once. A stream
            // beyond its limit would wait for another to end — never, before the release.
            let room = client
                .current_max_send_streams()
                .clamp(1, STREAMS_PER_PACKET);
            let leftover = requests.split_off(requests.len().min(room));
            let mut streams = Vec::with_capacity(requests.len());
            let mut finals = Vec::with_capacity(requests.len());
            for request in requests {
                let mut builder = Request::builder().method(request.method).uri(&request.uri);
                for (name, value) in &request.headers {
                    builder = builder.header(name, value);
                }
                let head = builder
                    .header(hyper::header::CONTENT_LENGTH, request.body.len())
                    .body(())
                    .map_err(|e| TransportError::Protocol(e.to_string()))?;
                let (response, mut send) = client.send_request(head, false)?;
                let split = request.body.len().saturating_sub(1);
                if split > 0 {
                    send.send_data(Bytes::copy_from_slice(&request.body[..split]), false)?;
                }
                finals.push((send, Bytes::copy_from_slice(&request.body[split..])));
                streams.push(Stream { response });
                client = client.ready().await?;
            }
            // Everything sent so far has left: a PING is answered after the frames before it.
            ping.ping(h2::Ping::opaque()).await?;
            gate.arm();
            let count = finals.len();
            for (mut send, last) in finals {
                send.reserve_capacity(last.len());
                send.send_data(last, true)?;
            }
            // The connection task writes the queued frames into the gate: wait until all of
            // them went through, sealed (TLS) and held.
            let started = Instant::now();
            while gate.plain() < count * FINAL_FRAME || gate.held() == 0 {
                if started.elapsed() > Duration::from_secs(2) {
                    return Err(TransportError::H2(format!(
                        "only {} of {} final frames reached the gate (flow control?)",
                        gate.plain() / FINAL_FRAME,
                        count
                    )));
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            Ok((
                Packet {
                    gate,
                    ping,
                    streams,
                },
                leftover,
            ))
        };
        tokio::time::timeout(deadline, work)
            .await
            .map_err(|_| TransportError::Timeout(deadline))?
    }

    /// Opens the gate and makes the connection task write: the held frames go out in one
    /// write, ahead of the PING that woke it. Returns when they were written.
    pub async fn release(&mut self) -> Result<Instant, TransportError> {
        self.gate.open();
        self.ping.ping(h2::Ping::opaque()).await?;
        self.gate
            .released()
            .ok_or_else(|| TransportError::H2("the held frames were not written".to_owned()))
    }
}

/// Whether the server at `host:port` speaks HTTP/2 with prior knowledge: a handshake and a
/// PING answered within `deadline`. [`TransportError::NotH2`] when it answers but not in
/// HTTP/2 (or, over TLS, does not offer `h2`); any other error when it cannot be reached.
pub async fn speaks_h2(
    host: &str,
    port: u16,
    tls: Option<&TlsConnector>,
    deadline: Duration,
) -> Result<(), TransportError> {
    let work = async {
        let io = tls::open(host, port, tls, b"h2").await?;
        let (_client, mut connection) = h2::client::handshake(io).await.map_err(not_h2)?;
        let mut ping = connection
            .ping_pong()
            .ok_or_else(|| TransportError::H2("no PING handle".to_owned()))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let pong = ping
            .ping(h2::Ping::opaque())
            .await
            .map(drop)
            .map_err(not_h2);
        driver.abort();
        pong
    };
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| TransportError::Timeout(deadline))?
}

impl Stream {
    /// The answer: its status, `Server-Timing` and the start of its body (up to
    /// [`MAX_ANSWER`](super::http1::MAX_ANSWER)), the rest read to its end and dropped.
    pub async fn answer(self) -> Result<Answer, TransportError> {
        // h2 hands over the final response only: interim 1xx HEADERS are not a response.
        let response = self.response.await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let mut body = response.into_body();
        let mut kept = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let room = super::http1::MAX_ANSWER.saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        Ok(Answer {
            status,
            headers,
            body: kept,
        })
    }
}
