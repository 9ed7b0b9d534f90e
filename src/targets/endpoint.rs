//! Anyone's HTTP endpoint as a target (`race`): one request per user, built from the request
//! template, each on an HTTP/1.1 connection of its own.
//!
//! Everything that can be done before the start is: every user's request is expanded and
//! every connection is opened (TCP and the HTTP/1.1 handshake) in [`Target::warm_up`], so that
//! at the barrier the only work left is writing the request. An endpoint that cannot be reached
//! is found there, before any request is sent. Every request, connecting included, has its
//! deadline (`--timeout`).
//!
//! A status in `--success` is an acknowledged success ([`Outcome::Accepted`]), which the
//! invariant must find written; a 5xx or no answer at all is a failure that may or may not
//! have written (indeterminate); any other status is a refusal ([`Outcome::Rejected`]).

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex as AsyncMutex;

use crate::domain::Outcome;
use crate::error::BookingError;
use crate::race::RaceSettings;
use crate::run::{Attempt, HttpStats, Target, TargetStats, Turn};

/// The most of a response body read (and thrown away): a refusal's text is not the verdict.
const MAX_BODY: usize = 64 * 1024;
/// Connections opened at once during the warm-up.
const OPENING_AT_ONCE: usize = 64;

/// A user's request and the connection it goes out on, ready before the start.
struct Ready {
    sender: SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
}

/// One run of a `race`.
pub struct EndpointTarget {
    settings: Arc<RaceSettings>,
    /// `{{run}}`: this run's number, from 1.
    run: u32,
    ready: Vec<AsyncMutex<Option<Ready>>>,
    stats: Mutex<HttpStats>,
}

impl EndpointTarget {
    pub fn new(settings: Arc<RaceSettings>, run: u32) -> Self {
        let ready = (0..settings.users).map(|_| AsyncMutex::new(None)).collect();
        Self {
            settings,
            run,
            ready,
            stats: Mutex::default(),
        }
    }

    /// User `user`'s request, expanded, and a connection to its host.
    async fn prepare(&self, user: u32) -> Result<Ready, BookingError> {
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
        let uri: Uri = path
            .parse()
            .map_err(|e| BookingError::Http(format!("--url: its path cannot be sent: {e}")))?;
        let mut request = Request::builder().method(template.method.clone()).uri(uri);
        let named = |name: &header::HeaderName| template.headers.iter().any(|(n, _)| n == name);
        if !named(&header::HOST) {
            request = request.header(header::HOST, authority.as_str());
        }
        for (name, value) in &template.headers {
            let value = HeaderValue::from_str(&value.expand(user, self.run))
                .map_err(|_| BookingError::Http(format!("-H {name}: the value cannot be sent")))?;
            request = request.header(name, value);
        }
        let body = match &template.body {
            Some(body) => {
                if !named(&header::CONTENT_TYPE) {
                    request = request.header(header::CONTENT_TYPE, "application/json");
                }
                Bytes::from(body.expand(user, self.run))
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| BookingError::Http(format!("the request cannot be built: {e}")))?;

        let deadline = self.settings.timeout;
        let connect = async {
            let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok::<_, std::io::Error>(stream)
        };
        let stream = tokio::time::timeout(deadline, connect)
            .await
            .map_err(|_| {
                BookingError::Http(format!(
                    "cannot connect to {authority} (--url): no answer within {}",
                    humantime::format_duration(deadline)
                ))
            })?
            .map_err(|e| {
                BookingError::Http(format!("cannot connect to {authority} (--url): {e}"))
            })?;
        let (sender, connection) = tokio::time::timeout(
            deadline,
            hyper::client::conn::http1::handshake(TokioIo::new(stream)),
        )
        .await
        .map_err(|_| BookingError::Http(format!("{authority}: the HTTP handshake timed out")))?
        .map_err(|e| BookingError::Http(format!("{authority}: {e}")))?;
        // The connection's own task: it ends when the connection closes or the sender drops.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Ready { sender, request })
    }

    fn count(&self, status: Option<u16>) {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count(status);
    }

    /// Sends the prepared request and reads the answer, within the deadline.
    async fn send(&self, mut ready: Ready) -> Result<Outcome, BookingError> {
        let deadline = self.settings.timeout;
        crate::steps::mark("request");
        let exchange = async {
            ready.sender.ready().await?;
            let response = ready.sender.send_request(ready.request).await?;
            let status = response.status().as_u16();
            crate::steps::mark("response");
            // Read (a bounded part of) the body, so that the answer is whole; its text is not
            // what the run is judged by.
            let mut body = response.into_body();
            let mut read = 0;
            while let Some(frame) = body.frame().await {
                read += frame?.data_ref().map_or(0, Bytes::len);
                if read >= MAX_BODY {
                    break;
                }
            }
            Ok::<_, hyper::Error>(status)
        };
        let status = match tokio::time::timeout(deadline, exchange).await {
            Ok(Ok(status)) => status,
            Ok(Err(error)) => {
                self.count(None);
                return Err(BookingError::Http(format!(
                    "no answer: {}",
                    super::serve::chain(&error)
                )));
            }
            Err(_) => {
                self.count(None);
                return Err(BookingError::Http(format!(
                    "no answer within {} (--timeout)",
                    humantime::format_duration(deadline)
                )));
            }
        };
        self.count(Some(status));
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
    /// Expands every user's request and opens its connection; the first that fails ends the
    /// warm-up, before anything was sent.
    async fn warm_up(&self, _lanes: u32) -> Result<(), BookingError> {
        let users: Vec<u32> = (0..self.settings.users).collect();
        for chunk in users.chunks(OPENING_AT_ONCE) {
            let opened =
                futures_util::future::join_all(chunk.iter().map(|user| self.prepare(*user))).await;
            for (user, ready) in chunk.iter().zip(opened) {
                *self.ready[*user as usize].lock().await = Some(ready?);
            }
        }
        Ok(())
    }

    /// One lane per user: each has its connection.
    fn lanes(&self) -> u32 {
        self.settings.users
    }

    async fn attempt(&self, turn: Turn) -> Attempt {
        let ready = match self.ready.get(turn.user as usize) {
            Some(slot) => slot.lock().await.take(),
            None => None,
        };
        let result = match ready {
            Some(ready) => self.send(ready).await,
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
            http: Some(
                self.stats
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            ),
        }
    }
}
