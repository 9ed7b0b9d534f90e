//! A burst's delivery: every user's request prepared before the barrier, released together
//! when it opens, and its answer read — the part of synchronised delivery that does not care
//! what the requests mean. `race` ([`crate::targets::endpoint`]) and `stress --target`
//! ([`crate::targets::serve`]) each build their requests and read their answers; this moves
//! the bytes.
//!
//! [`Delivery::prepare`] opens every connection and sends what [`Sync`] allows; the first user
//! past the barrier writes every held part ([`Delivery::deliver`], the gate), and each user
//! then reads its own answer.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex as AsyncMutex, OnceCell};

use super::h2::{Packet, Prepared, Stream};
use super::http1::{self, Answer, Held};
use super::tls::Tls;
use super::{Sync, TransportError};

/// Connections opened at once while preparing.
const OPENING_AT_ONCE: usize = 64;
/// Rounds of reopening the connections a server closed before the release. A server that
/// closes them faster than they are reopened is raced with the ones that stayed, and the
/// closed ones are said as failures.
const REOPEN_ROUNDS: u32 = 5;
/// How long the connections settle after they were pre-sent, before they are checked: a
/// server that resets a connection (a full accept queue, a per-client limit) does so within
/// a round trip of accepting it.
const SETTLE: Duration = Duration::from_millis(20);

/// How a burst goes out.
#[derive(Debug, Clone)]
pub struct Wire {
    /// Resolved: `none`, `last-byte` or `single-packet`.
    pub sync: Sync,
    /// For `https://`.
    pub tls: Option<Tls>,
    /// The deadline of each step: connecting and sending, the release, the answer.
    pub timeout: Duration,
}

/// Where a URL's requests go: its host, its port (the scheme's default when it names none) and
/// its authority (`host[:port]`, as the `Host` header and the certificate check want it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub host: String,
    pub port: u16,
    pub authority: String,
}

impl Origin {
    pub fn of(url: &url::Url) -> Self {
        let host = url.host_str().unwrap_or_default().to_owned();
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        Self {
            port: url.port_or_known_default().unwrap_or(80),
            host,
            authority,
        }
    }
}

/// A user's request, and where it goes.
pub struct Addressed {
    pub host: String,
    pub port: u16,
    /// `host[:port]`, as the `Host` header and the certificate check want it.
    pub authority: String,
    /// The path and query of the request line.
    pub path: String,
    pub request: Prepared,
}

impl Addressed {
    /// The bytes of its HTTP/1.1 request.
    pub fn http1_bytes(&self) -> Vec<u8> {
        http1::encode(
            &self.request.method,
            &self.path,
            &self.authority,
            &self.request.headers,
            &self.request.body,
        )
    }
}

/// Why the burst could not be prepared: nothing was released.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A request that cannot be built or sent as asked.
    #[error("{0}")]
    Request(String),
    #[error("{}", transport_line(authority, source))]
    Transport {
        authority: String,
        #[source]
        source: TransportError,
    },
}

fn transport_line(authority: &str, source: &TransportError) -> String {
    match source {
        TransportError::Connect(why) => format!("cannot connect to {authority}: {why}"),
        other => format!("{authority}: {other}"),
    }
}

/// A user's request, ready before the barrier.
enum Ready {
    /// Its own HTTP/1.1 connection, pre-sent up to what the sync mode holds back.
    Http1(Held),
    /// A stream of an HTTP/2 connection whose final frames wait behind a gate.
    H2(Stream),
}

/// One burst.
pub struct Delivery {
    wire: Arc<Wire>,
    ready: Vec<AsyncMutex<Option<Ready>>>,
    /// The HTTP/2 connections of single-packet, each released in one write, and their users.
    packets: AsyncMutex<Vec<(Packet, Vec<u32>)>>,
    /// Set by the first user past the barrier, once every held part was written: the
    /// deadline every request's answer shares (the release's start plus `--timeout`), and each
    /// user's release error, if its write failed.
    released: OnceCell<(tokio::time::Instant, Vec<Option<String>>)>,
    /// Connections reopened because the server closed them before the release.
    reopened: std::sync::atomic::AtomicU64,
    /// Requests the server answered before their held bytes were sent.
    answered_early: std::sync::atomic::AtomicU64,
    /// When each held part was written, in µs from `origin`.
    releases_us: Mutex<Vec<u64>>,
    origin: Instant,
}

impl Delivery {
    pub fn new(wire: Arc<Wire>, users: u32) -> Self {
        Self {
            wire,
            ready: (0..users).map(|_| AsyncMutex::new(None)).collect(),
            packets: AsyncMutex::new(Vec::new()),
            released: OnceCell::new(),
            reopened: std::sync::atomic::AtomicU64::new(0),
            answered_early: std::sync::atomic::AtomicU64::new(0),
            releases_us: Mutex::default(),
            origin: Instant::now(),
        }
    }

    /// Opens every user's connection and sends what the sync mode allows; `request` gives user
    /// `u`'s request. The first failure ends it, before any request is complete.
    pub async fn prepare(
        &self,
        request: impl Fn(u32) -> Result<Addressed, PrepareError>,
    ) -> Result<(), PrepareError> {
        let users: Vec<u32> = (0..self.ready.len() as u32).collect();
        if self.wire.sync == Sync::SinglePacket {
            // One connection per host (round-robin over servers), up to a packet's worth each.
            let mut by_host: Vec<(String, Vec<(u32, Addressed)>)> = Vec::new();
            for user in users {
                let addressed = request(user)?;
                match by_host.iter_mut().find(|(a, _)| *a == addressed.authority) {
                    Some((_, group)) => group.push((user, addressed)),
                    None => by_host.push((addressed.authority.clone(), vec![(user, addressed)])),
                }
            }
            let mut packets = self.packets.lock().await;
            for (_, mut group) in by_host {
                // As many streams per connection as the server allows: each connection takes
                // what it has room for, the rest go on the next.
                while !group.is_empty() {
                    let (members, requests): (Vec<u32>, Vec<Addressed>) =
                        std::mem::take(&mut group).into_iter().unzip();
                    let (mut packet, leftover) = self.prepare_packet(requests).await?;
                    let taken = packet.streams.len();
                    for (user, stream) in members.iter().zip(std::mem::take(&mut packet.streams)) {
                        *self.ready[*user as usize].lock().await = Some(Ready::H2(stream));
                    }
                    group = members[taken..].iter().copied().zip(leftover).collect();
                    packets.push((packet, members[..taken].to_vec()));
                }
            }
            return Ok(());
        }
        for chunk in users.chunks(OPENING_AT_ONCE) {
            let requests = chunk
                .iter()
                .map(|u| request(*u))
                .collect::<Result<Vec<_>, _>>()?;
            let opened =
                futures_util::future::join_all(requests.into_iter().map(|r| self.prepare_http1(r)))
                    .await;
            for (user, held) in chunk.iter().zip(opened) {
                *self.ready[*user as usize].lock().await = Some(Ready::Http1(held?));
            }
        }
        self.reopen_closed().await;
        let (mut reopened, mut early) = (0, 0);
        for slot in &self.ready {
            if let Some(Ready::Http1(held)) = slot.lock().await.as_ref() {
                reopened += u64::from(held.reopened());
                early += u64::from(held.answered_early());
            }
        }
        self.reopened
            .store(reopened, std::sync::atomic::Ordering::Relaxed);
        self.answered_early
            .store(early, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Reopens the connections the server closed (or reset) before the
    /// release — a server with a small accept backlog resets some of twenty connections
    /// opened at once — so that the burst goes out whole. Bounded: [`REOPEN_ROUNDS`] rounds;
    /// a connection still closed then fails at the release, and is said as a failure.
    async fn reopen_closed(&self) {
        for _ in 0..REOPEN_ROUNDS {
            tokio::time::sleep(SETTLE).await;
            let mut closed = 0;
            for slot in &self.ready {
                let mut ready = slot.lock().await;
                let Some(Ready::Http1(held)) = ready.as_mut() else {
                    continue;
                };
                if !held.closed_early() {
                    continue;
                }
                closed += 1;
                // A connection that cannot be reopened fails at the release, and says so.
                let _ = held.reopen().await;
            }
            if closed == 0 {
                return;
            }
        }
    }

    /// How many connections were reopened before the release.
    pub fn reopened(&self) -> u64 {
        self.reopened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many requests the server answered before the release: it acts before a request is
    /// complete (a handler that never reads the body), so holding a byte back held nothing.
    pub fn answered_early(&self) -> u64 {
        self.answered_early
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A request on a connection of its own, sent up to what the sync mode holds back.
    async fn prepare_http1(&self, addressed: Addressed) -> Result<Held, PrepareError> {
        let bytes = addressed.http1_bytes();
        let Addressed {
            host,
            port,
            authority,
            ..
        } = addressed;
        let hold = match self.wire.sync {
            Sync::LastByte => 1,
            // Nothing of it before the barrier: the connection only.
            _ => bytes.len(),
        };
        let tls = self.wire.tls.as_ref().map(|t| &t.http1);
        Held::pre_send(&host, port, tls, bytes, hold, self.wire.timeout)
            .await
            .map_err(|source| PrepareError::Transport { authority, source })
    }

    /// How many HTTP/2 connections single-packet opened (each released in one write).
    pub async fn packets(&self) -> usize {
        self.packets.lock().await.len()
    }

    /// Requests as the streams of one HTTP/2 connection (one host), final frames held; the
    /// ones it had no room for come back.
    async fn prepare_packet(
        &self,
        requests: Vec<Addressed>,
    ) -> Result<(Packet, Vec<Addressed>), PrepareError> {
        let mut prepared = Vec::with_capacity(requests.len());
        let mut target: Option<(String, u16, String)> = None;
        for Addressed {
            host,
            port,
            authority,
            request,
            ..
        } in requests
        {
            if target.as_ref().is_some_and(|t| t.2 != authority) {
                return Err(PrepareError::Request(
                    "--sync single-packet sends every request on one connection: every user's request must go to one host".to_owned(),
                ));
            }
            target = Some((host, port, authority));
            prepared.push(request);
        }
        let Some((host, port, authority)) = target else {
            return Err(PrepareError::Request("no request to send".to_owned()));
        };
        let tls = self.wire.tls.as_ref().map(|t| &t.h2);
        let (packet, leftover) = Packet::prepare(&host, port, tls, prepared, self.wire.timeout)
            .await
            .map_err(|source| PrepareError::Transport {
                authority: format!("{authority} (HTTP/2)"),
                source,
            })?;
        let leftover = leftover
            .into_iter()
            .map(|request| Addressed {
                host: host.clone(),
                port,
                authority: authority.clone(),
                path: String::new(),
                request,
            })
            .collect();
        Ok((packet, leftover))
    }

    /// The gate: writes every user's held part in one loop, from one task, so that the final
    /// bytes leave back to back — a write each, microseconds apart — instead of each waiting
    /// for its own task to be scheduled after the barrier. Returns each user's write error.
    async fn release_all(&self) -> (tokio::time::Instant, Vec<Option<String>>) {
        let mut errors = vec![None; self.ready.len()];
        let mut releases = Vec::with_capacity(self.ready.len());
        let micros = |at: Instant| {
            u64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
        };
        // One deadline for every request, from the release: its writes and its answer share
        // it. A server that stopped reading cannot hold the release (and every user behind
        // it) for a --timeout per connection.
        let deadline = tokio::time::Instant::now() + self.wire.timeout;
        let late = || {
            format!(
                "the release was not written within {} (--timeout)",
                humantime::format_duration(self.wire.timeout)
            )
        };
        // Single-packet: one write per connection, back to back.
        let mut packets = self.packets.lock().await;
        for (packet, members) in packets.iter_mut() {
            let released = tokio::time::timeout_at(deadline, packet.release()).await;
            let error = match released {
                Ok(Ok(at)) => {
                    releases.push(micros(at));
                    continue;
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => late(),
            };
            for user in members.iter() {
                if let Some(e) = errors.get_mut(*user as usize) {
                    *e = Some(error.clone());
                }
            }
        }
        drop(packets);
        for (slot, error) in self.ready.iter().zip(errors.iter_mut()) {
            let mut ready = slot.lock().await;
            if let Some(Ready::Http1(held)) = ready.as_mut() {
                match tokio::time::timeout_at(deadline, held.release()).await {
                    Ok(Ok(at)) => releases.push(micros(at)),
                    Ok(Err(e)) => *error = Some(e.to_string()),
                    Err(_) => *error = Some(late()),
                }
            }
        }
        self.releases_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(releases);
        (deadline, errors)
    }

    /// User `user`'s request delivered: the first user here releases everyone (the others wait
    /// for it), then each reads its own answer, within the deadline.
    pub async fn deliver(&self, user: u32) -> Result<Answer, TransportError> {
        let (deadline, released) = self.released.get_or_init(|| self.release_all()).await;
        let ready = match self.ready.get(user as usize) {
            Some(slot) => slot.lock().await.take(),
            None => None,
        };
        let Some(ready) = ready else {
            return Err(TransportError::Protocol(format!(
                "user {user} has no prepared request"
            )));
        };
        crate::steps::mark("request");
        if let Some(error) = released.get(user as usize).and_then(Option::as_ref) {
            return Err(TransportError::Release(error.clone()));
        }
        let exchange = async {
            match ready {
                Ready::Http1(held) => held.answer().await,
                Ready::H2(stream) => stream.answer().await,
            }
        };
        let answer = match tokio::time::timeout_at(*deadline, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(TransportError::Timeout(self.wire.timeout)),
        };
        crate::steps::mark("response");
        Ok(answer)
    }

    /// The mode the burst goes out in.
    pub fn sync(&self) -> Sync {
        self.wire.sync
    }

    /// When each held part was written (µs from the burst's start), for the release spread.
    pub fn releases_us(&self) -> Vec<u64> {
        self.releases_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
