//! Anyone's HTTP endpoint as a target (`race`): one request per user, built from the request
//! template, each on a connection (HTTP/1.1) or a stream (HTTP/2) of its own.
//!
//! Everything that can be done before the start is: every user's request is expanded, its
//! connection opened and — under `--sync` — all of it but its final bytes written, in
//! [`Target::warm_up`] ([`crate::sync::delivery`]). An endpoint that cannot be reached is found
//! there, before any request is complete. At the barrier only the held bytes are left to
//! write. Every request, connecting included, has its deadline (`--timeout`).
//!
//! With `[[request]]` entries a burst holds several requests — different users sending
//! different ones, or one user several at once on their own session: each is a lane of the
//! runner and a connection (or stream) of its own, all released together. Each user's
//! `[[prepare]]` steps run first, in warm-up, outside the burst's timings.
//!
//! An answer its request's `success` accepts (status, headers, body) is an acknowledged
//! success ([`Outcome::Acknowledged`]), which the invariant must find written; a 5xx or no
//! answer at all is a failure that may or may not have written (indeterminate); any other
//! answer is a refusal ([`Outcome::Declined`]).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use async_trait::async_trait;

use crate::domain::Outcome;
use crate::error::BookingError;
use crate::http::wire;
use crate::race::RaceSettings;
use crate::race::api_check::ApiCheck;
use crate::race::judge::OneByOne;
use crate::race::prepare::{self, Preparation, Session};
use crate::race::template::Scope;
use crate::run::{Attempt, Target, TargetStats, Turn};
use crate::sync::HttpStats;
use crate::sync::delivery::{Addressed, Delivery, PrepareError, Wire};
use crate::sync::exchange;

/// One run of a `race`.
pub struct EndpointTarget {
    settings: Arc<RaceSettings>,
    /// `{{run}}`: this run's number, from 1.
    run: u32,
    wire: Arc<Wire>,
    delivery: Delivery,
    /// Each user's values and cookies, once prepared ([`Target::warm_up`]).
    sessions: OnceLock<Vec<Session>>,
    stats: Mutex<HttpStats>,
}

impl EndpointTarget {
    pub fn new(settings: Arc<RaceSettings>, run: u32) -> Self {
        let wire = Arc::new(Wire {
            sync: settings.sync,
            tls: settings.tls.clone(),
            timeout: settings.timeout,
        });
        let delivery = Delivery::new(Arc::clone(&wire), settings.burst_size());
        let stats = HttpStats {
            by_request: settings
                .requests
                .iter()
                .map(|r| crate::sync::stats::RequestCounts::named(&r.template.name))
                .collect(),
            ..HttpStats::default()
        };
        Self {
            settings,
            run,
            wire,
            delivery,
            sessions: OnceLock::new(),
            stats: Mutex::new(stats),
        }
    }

    /// Request `slot` of the burst, expanded for its user: where it goes and what it is.
    fn request(&self, slot: u32) -> Result<Addressed, String> {
        let slot = *self
            .settings
            .slots
            .get(slot as usize)
            .ok_or_else(|| format!("no request {slot} in the burst"))?;
        let session = self.session(slot.user);
        let scope = Scope {
            user: slot.user,
            run: self.run,
            vars: session.map(|s| &s.vars),
        };
        let request = &self.settings.requests[slot.request].template;
        request
            .address(&scope, session.map(|s| &s.jar))
            .map(|(addressed, _)| addressed)
    }

    fn session(&self, user: u32) -> Option<&Session> {
        self.sessions.get().and_then(|all| all.get(user as usize))
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, HttpStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Request `slot` delivered, and its answer read as its `success` says.
    async fn send(&self, slot: u32) -> Result<Outcome, BookingError> {
        let Some(&crate::race::Slot { user, request }) = self.settings.slots.get(slot as usize)
        else {
            return Err(BookingError::Target(format!(
                "no request {slot} in the burst"
            )));
        };
        let race_request = &self.settings.requests[request];
        let started = Instant::now();
        let delivered = self.delivery.deliver(slot).await;
        let took = started.elapsed();
        let answer = match delivered {
            Ok(answer) => answer,
            Err(error) => {
                let line = error.no_answer();
                self.show(user, request, &line);
                self.stats().count_request(request, None, false, took);
                return Err(BookingError::Target(line));
            }
        };
        self.show(user, request, &prepare::glance(&answer));
        let status = answer.status;
        let success = race_request.success.matches(&answer);
        {
            let mut stats = self.stats();
            stats.count_request(request, Some(status), success, took);
            stats
                .arrivals_us
                .extend(answer.server_timing().and_then(wire::arrival_of));
        }
        if success {
            return Ok(Outcome::Acknowledged);
        }
        if status >= 500 {
            // A failure of the server's: it may have written before it failed.
            return Err(BookingError::Target(prepare::status_line(status)));
        }
        Ok(Outcome::Declined)
    }

    /// Every user's values and cookies: their `users-file` row, then what their `[[prepare]]`
    /// steps set (each user with a jar of their own). Once per target: a target is one run.
    async fn prepare_users(&self) -> Result<(), BookingError> {
        let settings = &self.settings;
        let sessions = if settings.prepare.is_empty() {
            // No steps: each user's values are their row, and nothing is sent.
            (0..settings.users)
                .map(|user| Session {
                    vars: settings
                        .rows
                        .get(user as usize)
                        .cloned()
                        .unwrap_or_default(),
                    ..Session::default()
                })
                .collect()
        } else {
            Preparation {
                steps: &settings.prepare,
                wire: &self.wire,
                run: self.run,
                deadline: settings.prepare_timeout,
                show: settings.verbose >= 2,
                secrets: &settings.secrets,
            }
            .all(settings.users, &settings.rows)
            .await
            .map_err(|e| BookingError::Target(e.to_string()))?
        };
        let _ = self.sessions.set(sessions);
        Ok(())
    }

    /// `--baseline sequential`: the burst's requests sent one after another, each whole and
    /// answered before the next leaves, by users prepared for it — what the service does when
    /// nothing is concurrent.
    pub async fn one_by_one(&self) -> Result<OneByOne, BookingError> {
        self.prepare_users().await?;
        let mut done = OneByOne::default();
        for (index, slot) in self.settings.slots.iter().enumerate() {
            let addressed = self
                .request(u32::try_from(index).unwrap_or(u32::MAX))
                .map_err(BookingError::Target)?;
            done.sent += 1;
            match exchange::one(&self.wire, addressed).await {
                Ok(answer) => {
                    self.show(
                        slot.user,
                        slot.request,
                        &format!("one by one: {}", prepare::glance(&answer)),
                    );
                    if self.settings.requests[slot.request]
                        .success
                        .matches(&answer)
                    {
                        done.successes += 1;
                    } else if answer.status >= 500 {
                        done.errors += 1;
                    }
                }
                Err(error) => {
                    self.show(
                        slot.user,
                        slot.request,
                        &format!("one by one: {}", error.no_answer()),
                    );
                    done.errors += 1;
                }
            }
        }
        Ok(done)
    }

    /// A `--check-url`, read as user 0 (with their session when there is one): the body of
    /// its answer, which must be a 2xx — a state that cannot be read judges nothing.
    pub async fn read_state(&self, check: &ApiCheck) -> Result<Vec<u8>, BookingError> {
        let session = self.session(0);
        let scope = Scope {
            user: 0,
            run: self.run,
            vars: session.map(|s| &s.vars),
        };
        let (addressed, _) = check
            .request
            .address(&scope, session.map(|s| &s.jar))
            .map_err(BookingError::Target)?;
        let shown = format!("--check-url {}", check.request.url.display());
        let answer = exchange::one(&self.wire, addressed)
            .await
            .map_err(|e| BookingError::Target(format!("{shown}: {}", e.no_answer())))?;
        if !(200..300).contains(&answer.status) {
            return Err(BookingError::Target(format!(
                "{shown} answered {}: the state could not be read",
                prepare::status_line(answer.status)
            )));
        }
        Ok(answer.body)
    }

    /// `-v`: what user `user`'s request came back with, on stderr, secrets masked.
    fn show(&self, user: u32, request: usize, what: &str) {
        if self.settings.verbose == 0 {
            return;
        }
        let mut secrets = self.settings.secrets.clone();
        if let Some(session) = self.session(user) {
            secrets.extend(session.secrets.iter().cloned());
        }
        let name = &self.settings.requests[request].template.name;
        eprintln!(
            "{}",
            crate::config::scrub(
                &format!("run {} · user {user} · {name}: {what}", self.run),
                &secrets
            )
        );
    }
}

#[async_trait]
impl Target for EndpointTarget {
    /// Prepares every user (the `[[prepare]]` steps, each with their own jar), then expands
    /// every request of the burst, opens its connection and sends what `--sync` allows; the
    /// first that fails ends the warm-up, before any request of the burst is complete.
    async fn warm_up(&self, _lanes: u32) -> Result<(), BookingError> {
        self.prepare_users().await?;
        self.delivery
            .prepare(|slot| self.request(slot).map_err(PrepareError::Request))
            .await
            .map_err(|e| BookingError::Target(format!("{e} (--url)")))
    }

    /// One lane per request of the burst: each has its connection (or stream).
    fn lanes(&self) -> u32 {
        self.settings.burst_size()
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
                answered_early: self.delivery.answered_early(),
                ..self.stats().clone()
            })),
        }
    }
}
