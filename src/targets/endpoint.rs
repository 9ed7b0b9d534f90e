//! Anyone's HTTP endpoint as a target (`race`): one request per user, built from the request
//! template, each on an HTTP/1.1 connection of its own.
//!
//! Everything that can be done before the start is: every user's request is expanded, its
//! connection opened and — under `--sync last-byte` — all of it but its final byte written, in
//! [`Target::warm_up`] ([`crate::sync`]). An endpoint that cannot be reached is found there,
//! before any request is complete. At the barrier only the held bytes are left to write. Every
//! request, connecting included, has its deadline (`--timeout`).
//!
//! A status in `--success` is an acknowledged success ([`Outcome::Accepted`]), which the
//! invariant must find written; a 5xx or no answer at all is a failure that may or may not
//! have written (indeterminate); any other status is a refusal ([`Outcome::Rejected`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use hyper::header::HeaderValue;
use tokio::sync::{Mutex as AsyncMutex, OnceCell};

use crate::domain::Outcome;
use crate::error::BookingError;
use crate::http::wire;
use crate::race::RaceSettings;
use crate::run::{Attempt, HttpStats, Target, TargetStats, Turn};
use crate::sync::Sync;
use crate::sync::h2::{Packet, Prepared, Stream};
use crate::sync::http1::{self, Held};

/// Connections opened at once during the warm-up.
const OPENING_AT_ONCE: usize = 64;
/// Streams per HTTP/2 connection under single-packet: within every common server's
/// `SETTINGS_MAX_CONCURRENT_STREAMS` (Apache 100, nginx 128, Go 250) and `h2`'s own assumption
/// before the server's SETTINGS, and 1,000 bytes of final frames — one segment even on a
/// 1,500-byte network.
pub const STREAMS_PER_PACKET: usize = 100;

/// A user's request, expanded, and where it goes.
struct Addressed {
    host: String,
    port: u16,
    /// `host[:port]`, as the `Host` header and the certificate check want it.
    authority: String,
    /// The path and query of the request line.
    path: String,
    request: Prepared,
}

/// A user's request, ready before the barrier.
enum Ready {
    /// Its own HTTP/1.1 connection, pre-sent up to what `--sync` holds back.
    Http1(Held),
    /// A stream of an HTTP/2 connection whose final frames wait behind a gate.
    H2(Stream),
}

/// One run of a `race`.
pub struct EndpointTarget {
    settings: Arc<RaceSettings>,
    /// `{{run}}`: this run's number, from 1.
    run: u32,
    ready: Vec<AsyncMutex<Option<Ready>>>,
    /// The HTTP/2 connections of single-packet, each released in one write.
    packets: AsyncMutex<Vec<Packet>>,
    /// Set by the first user past the barrier, once every held part was written: each user's
    /// release error, if its write failed.
    released: OnceCell<Vec<Option<String>>>,
    stats: Mutex<HttpStats>,
    /// The zero of the release times.
    origin: Instant,
}

impl EndpointTarget {
    pub fn new(settings: Arc<RaceSettings>, run: u32) -> Self {
        let ready = (0..settings.users).map(|_| AsyncMutex::new(None)).collect();
        Self {
            settings,
            run,
            ready,
            packets: AsyncMutex::new(Vec::new()),
            released: OnceCell::new(),
            stats: Mutex::default(),
            origin: Instant::now(),
        }
    }

    /// User `user`'s request, expanded: where it goes and what it is.
    fn request(&self, user: u32) -> Result<Addressed, BookingError> {
        let template = &self.settings.request;
        let url_text = template.url.expand(user, self.run);
        let url = url::Url::parse(&url_text)
            .map_err(|e| BookingError::Http(format!("--url is not a URL for user {user}: {e}")))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let mut path = url.path().to_owned();
        if let Some(query) = url.query() {
            path.push('?');
            path.push_str(query);
        }
        let mut headers = Vec::with_capacity(template.headers.len() + 1);
        for (name, value) in &template.headers {
            let value = value.expand(user, self.run);
            HeaderValue::from_str(&value)
                .map_err(|_| BookingError::Http(format!("-H {name}: the value cannot be sent")))?;
            headers.push((name.clone(), value));
        }
        let body = template
            .body
            .as_ref()
            .map(|b| b.expand(user, self.run))
            .unwrap_or_default();
        if !body.is_empty()
            && !headers
                .iter()
                .any(|(n, _)| n == hyper::header::CONTENT_TYPE)
        {
            headers.push((hyper::header::CONTENT_TYPE, "application/json".to_owned()));
        }
        let prepared = Prepared {
            method: template.method.clone(),
            uri: format!("{}://{authority}{path}", url.scheme()),
            headers,
            body: body.into_bytes(),
        };
        Ok(Addressed {
            host,
            port,
            authority,
            path,
            request: prepared,
        })
    }

    /// User `user`'s request on a connection of its own, sent up to what `--sync` holds back.
    async fn prepare_http1(&self, user: u32) -> Result<Held, BookingError> {
        let Addressed {
            host,
            port,
            authority,
            path,
            request,
        } = self.request(user)?;
        let bytes = http1::encode(
            &request.method,
            &path,
            &authority,
            &request.headers,
            &request.body,
        );
        let hold = match self.settings.sync {
            Sync::LastByte => 1,
            // Nothing of it before the barrier: the connection only.
            _ => bytes.len(),
        };
        let tls = self.settings.tls.as_ref().map(|t| &t.http1);
        Held::pre_send(&host, port, tls, bytes, hold, self.settings.timeout)
            .await
            .map_err(|e| BookingError::Http(format!("cannot connect to {authority} (--url): {e}")))
    }

    /// Users `users`' requests as the streams of one HTTP/2 connection, final frames held.
    async fn prepare_packet(&self, users: &[u32]) -> Result<Packet, BookingError> {
        let mut requests = Vec::with_capacity(users.len());
        let mut target = None;
        for user in users {
            let Addressed {
                host,
                port,
                authority,
                request,
                ..
            } = self.request(*user)?;
            if target
                .as_ref()
                .is_some_and(|t: &(String, u16, String)| t.2 != authority)
            {
                return Err(BookingError::Http(
                    "--sync single-packet sends every request on one connection: --url must name one host for every user".to_owned(),
                ));
            }
            target = Some((host, port, authority));
            requests.push(request);
        }
        let Some((host, port, authority)) = target else {
            return Err(BookingError::Http("no request to send".to_owned()));
        };
        let tls = self.settings.tls.as_ref().map(|t| &t.h2);
        Packet::prepare(&host, port, tls, requests, self.settings.timeout)
            .await
            .map_err(|e| BookingError::Http(format!("{authority} (--url, HTTP/2): {e}")))
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, HttpStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The gate: writes every user's held part in one loop, from one task, so that the final
    /// bytes leave back to back — a write each, microseconds apart — instead of each waiting
    /// for its own task to be scheduled after the barrier. Returns each user's write error.
    async fn release_all(&self) -> Vec<Option<String>> {
        let mut errors = vec![None; self.ready.len()];
        let mut releases = Vec::with_capacity(self.ready.len());
        let micros = |at: Instant| {
            u64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
        };
        // Single-packet: one write per connection, back to back.
        // Each write has the request's deadline: a server that stopped reading cannot hold
        // the release (and every user behind it) forever.
        let deadline = self.settings.timeout;
        let late = || {
            format!(
                "the release was not written within {}",
                humantime::format_duration(deadline)
            )
        };
        let mut packets = self.packets.lock().await;
        for (i, packet) in packets.iter_mut().enumerate() {
            let released = tokio::time::timeout(deadline, packet.release())
                .await
                .unwrap_or_else(|_| Err(late()));
            match released {
                Ok(at) => releases.push(micros(at)),
                Err(error) => {
                    for e in errors
                        .iter_mut()
                        .skip(i * STREAMS_PER_PACKET)
                        .take(STREAMS_PER_PACKET)
                    {
                        *e = Some(error.clone());
                    }
                }
            }
        }
        drop(packets);
        for (slot, error) in self.ready.iter().zip(errors.iter_mut()) {
            let mut ready = slot.lock().await;
            if let Some(Ready::Http1(held)) = ready.as_mut() {
                match tokio::time::timeout(deadline, held.release()).await {
                    Ok(Ok(at)) => releases.push(micros(at)),
                    Ok(Err(e)) => *error = Some(e.to_string()),
                    Err(_) => *error = Some(late()),
                }
            }
        }
        self.stats().releases_us.extend(releases);
        errors
    }

    /// Reads the answer to a released request, within the deadline.
    async fn send(&self, ready: Ready, released: Option<&String>) -> Result<Outcome, BookingError> {
        let deadline = self.settings.timeout;
        crate::steps::mark("request");
        if let Some(error) = released {
            self.stats().count(None);
            return Err(BookingError::Http(format!("no answer: {error}")));
        }
        let exchange = async {
            match ready {
                Ready::Http1(held) => held.answer().await,
                Ready::H2(stream) => stream.answer().await,
            }
        };
        let answer = match tokio::time::timeout(deadline, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                self.stats().count(None);
                return Err(BookingError::Http(format!("no answer: {error}")));
            }
            Err(_) => {
                self.stats().count(None);
                return Err(BookingError::Http(format!(
                    "no answer within {} (--timeout)",
                    humantime::format_duration(deadline)
                )));
            }
        };
        crate::steps::mark("response");
        let status = answer.status;
        {
            let mut stats = self.stats();
            stats.count(Some(status));
            stats
                .arrivals_us
                .extend(answer.server_timing.as_deref().and_then(wire::arrival_of));
        }
        if self.settings.success.contains(status) {
            return Ok(Outcome::Accepted { status });
        }
        if status >= 500 {
            // A failure of the server's: it may have written before it failed.
            let reason = hyper::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            return Err(BookingError::Http(format!("{status} {reason}")));
        }
        Ok(Outcome::Rejected { status })
    }
}

#[async_trait]
impl Target for EndpointTarget {
    /// Expands every user's request, opens its connection and sends what `--sync` allows; the
    /// first that fails ends the warm-up, before any request is complete.
    async fn warm_up(&self, _lanes: u32) -> Result<(), BookingError> {
        let users: Vec<u32> = (0..self.settings.users).collect();
        if self.settings.sync == Sync::SinglePacket {
            let mut packets = self.packets.lock().await;
            for chunk in users.chunks(STREAMS_PER_PACKET) {
                let mut packet = self.prepare_packet(chunk).await?;
                for (user, stream) in chunk.iter().zip(std::mem::take(&mut packet.streams)) {
                    *self.ready[*user as usize].lock().await = Some(Ready::H2(stream));
                }
                packets.push(packet);
            }
            return Ok(());
        }
        for chunk in users.chunks(OPENING_AT_ONCE) {
            let opened =
                futures_util::future::join_all(chunk.iter().map(|user| self.prepare_http1(*user)))
                    .await;
            for (user, held) in chunk.iter().zip(opened) {
                *self.ready[*user as usize].lock().await = Some(Ready::Http1(held?));
            }
        }
        Ok(())
    }

    /// One lane per user: each has its connection.
    fn lanes(&self) -> u32 {
        self.settings.users
    }

    async fn attempt(&self, turn: Turn) -> Attempt {
        // The first user past the barrier releases everyone; the others wait for it.
        let released = self.released.get_or_init(|| self.release_all()).await;
        let ready = match self.ready.get(turn.user as usize) {
            Some(slot) => slot.lock().await.take(),
            None => None,
        };
        let error = released.get(turn.user as usize).and_then(Option::as_ref);
        let result = match ready {
            Some(ready) => self.send(ready, error).await,
            None => Err(BookingError::Http(format!(
                "user {} has no prepared request",
                turn.user
            ))),
        };
        Attempt {
            request: None,
            result,
        }
    }

    fn stats(&self) -> TargetStats {
        TargetStats {
            strategy: Default::default(),
            http: Some(self.stats().clone()),
        }
    }
}
