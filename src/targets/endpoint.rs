//! Anyone's HTTP endpoint as a target (`race`): one request per user, built from the request
//! template, each on a connection (HTTP/1.1) or a stream (HTTP/2) of its own.
//!
//! Everything that can be done before the start is: every user's request is expanded, its
//! connection opened and — under `--sync` — all of it but its final bytes written, in
//! [`Target::warm_up`] ([`crate::sync::delivery`]). An endpoint that cannot be reached is found
//! there, before any request is complete. At the barrier only the held bytes are left to
//! write. Every request, connecting included, has its deadline (`--timeout`).
//!
//! A status in `--success` is an acknowledged success ([`Outcome::Acknowledged`]), which the
//! invariant must find written; a 5xx or no answer at all is a failure that may or may not
//! have written (indeterminate); any other status is a refusal ([`Outcome::Declined`]).

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use hyper::header::HeaderValue;

use crate::domain::Outcome;
use crate::error::BookingError;
use crate::http::wire;
use crate::race::RaceSettings;
use crate::run::{Attempt, Target, TargetStats, Turn};
use crate::sync::HttpStats;
use crate::sync::delivery::{Addressed, Delivery, Origin, Wire};
use crate::sync::h2::Prepared;

/// One run of a `race`.
pub struct EndpointTarget {
    settings: Arc<RaceSettings>,
    /// `{{run}}`: this run's number, from 1.
    run: u32,
    delivery: Delivery,
    stats: Mutex<HttpStats>,
}

impl EndpointTarget {
    pub fn new(settings: Arc<RaceSettings>, run: u32) -> Self {
        let wire = Wire {
            sync: settings.sync,
            tls: settings.tls.clone(),
            timeout: settings.timeout,
        };
        let delivery = Delivery::new(Arc::new(wire), settings.users);
        Self {
            settings,
            run,
            delivery,
            stats: Mutex::default(),
        }
    }

    /// User `user`'s request, expanded: where it goes and what it is.
    fn request(&self, user: u32) -> Result<Addressed, String> {
        let template = &self.settings.request;
        let Origin {
            host,
            port,
            authority,
        } = template.url.origin.clone();
        let path = template.url.path.expand(user, self.run);
        let mut headers = Vec::with_capacity(template.headers.len() + 1);
        for (name, value) in &template.headers {
            let value = value.expand(user, self.run);
            HeaderValue::from_str(&value)
                .map_err(|_| format!("-H {name}: the value cannot be sent"))?;
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
            uri: format!("{}://{authority}{path}", template.url.scheme()),
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

    fn stats(&self) -> std::sync::MutexGuard<'_, HttpStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// User `user`'s request delivered, and its answer read as `--success` says.
    async fn send(&self, user: u32) -> Result<Outcome, BookingError> {
        let answer = match self.delivery.deliver(user).await {
            Ok(answer) => answer,
            Err(error) => {
                self.stats().count(None);
                return Err(BookingError::Target(error.no_answer()));
            }
        };
        let status = answer.status;
        {
            let mut stats = self.stats();
            stats.count(Some(status));
            stats
                .arrivals_us
                .extend(answer.server_timing.as_deref().and_then(wire::arrival_of));
        }
        if self.settings.success.contains(status) {
            return Ok(Outcome::Acknowledged);
        }
        if status >= 500 {
            // A failure of the server's: it may have written before it failed.
            let reason = hyper::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            return Err(BookingError::Target(format!("{status} {reason}")));
        }
        Ok(Outcome::Declined)
    }
}

#[async_trait]
impl Target for EndpointTarget {
    /// Expands every user's request, opens its connection and sends what `--sync` allows; the
    /// first that fails ends the warm-up, before any request is complete.
    async fn warm_up(&self, _lanes: u32) -> Result<(), BookingError> {
        self.delivery
            .prepare(|user| {
                self.request(user)
                    .map_err(crate::sync::delivery::PrepareError::Request)
            })
            .await
            .map_err(|e| BookingError::Target(format!("{e} (--url)")))
    }

    /// One lane per user: each has its connection.
    fn lanes(&self) -> u32 {
        self.settings.users
    }

    async fn attempt(&self, turn: Turn) -> Attempt {
        Attempt {
            request: None,
            result: self.send(turn.user).await,
        }
    }

    fn stats(&self) -> TargetStats {
        TargetStats {
            strategy: Default::default(),
            remote: Some(Box::new(HttpStats {
                releases_us: self.delivery.releases_us(),
                reopened: self.delivery.reopened(),
                ..self.stats().clone()
            })),
        }
    }
}
