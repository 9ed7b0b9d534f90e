//! # booking-cli
//!
//! Reproduces, on a real PostgreSQL and a real Redis, how a hotel booking flow overbooks when
//! many users book the last room at once — and proves which fixes hold. A booking runs
//! *check availability → slow work → increment `booked_count` → insert the booking*; `stress`
//! releases many users into that flow at the same instant and then reads the final state back
//! from the database to give its verdict.
//!
//! ## Layout
//!
//! Where a new piece goes, from the file list alone: a strategy is a file in [`strategy`], a
//! command's flags a file in [`cli`] and its front door a file in [`cmd`], a target the runner
//! drives a file in [`targets`], a delivery mode or transport a file in [`sync`], an output
//! format a file in [`report`], a judge of `race` in [`race`] (`judge.rs`).
//!
//! Front doors:
//! - [`cli`]: the command line, as clap types — one file per command's flags, shared groups in
//!   `groups.rs`; parsing only.
//! - [`app`]: dispatches a command to [`cmd`]; [`exit`]: the exit statuses and how an error
//!   maps to one (a leaf every command reads).
//! - [`cmd`]: one file per command (`db reset`/`db drop`, `book`, `stress` and its workers,
//!   `race`, `serve`, `interleave`, `strategies`, `bench`, `completions`/`man`).
//! - [`http`]: `serve`, the booking API — router, accept loop, handlers, problem+json, wire
//!   contract.
//! - [`config`]: validated settings built once from the flags (`--target` parsed into a
//!   `TargetUrl`); URL masking. [`race`]: `race`'s settings (`--url` parsed once into an
//!   `EndpointUrl`, request templates) and its judge by the user's SQL.
//!
//! The engine and what it drives:
//! - [`run`]: the runner — a [`run::Target`] driven by users released together — its plan,
//!   its tally (one map of outcomes), the invariant and its verdicts (and whether runs met
//!   their expectation, decided once), booking-cli's schema read back.
//! - [`targets`]: what the runner drives: booking-cli's strategies, its own `serve`, anyone's
//!   HTTP endpoint (`race`).
//! - [`sync`]: the transport of a remote target — synchronised delivery (last-byte,
//!   single-packet), HTTP/1.1 and HTTP/2 framing, TLS, typed errors.
//! - [`strategy`]: one file per way of booking, behind the [`strategy::Strategy`] trait.
//! - [`interleave`]: users run step by step through every ordering of their steps (the run,
//!   the scheduler, the gate, the summary, the schedules).
//! - [`processes`]: `--processes N`: worker processes released together. [`chaos`]:
//!   `--chaos FAULT@MS`. [`bench`]: `bench lock`.
//!
//! Stores and services:
//! - [`db`]: connecting (with time-outs), `db reset`/`db drop`.
//! - [`repo`]: the repository — the only place booking-cli's SQL lives, one file per concern.
//! - [`lock`]: the Redis lock — the protocol, its policy, stats, connection, administration,
//!   Redlock, a Redis Cluster, the failover lab.
//! - [`check_db`]: the user's own database, read through the checks they give, read-only;
//!   [`sql_text`]: where a user's SQL statements begin and end.
//!
//! Outputs: [`report`], one file (or folder) per format — `text/` (one file per command),
//! `json`, `junit` (one writer), `markdown`, `html`, `timeline`; it decides nothing.
//!
//! Leaves: [`domain`] (rooms, users, stays, outcomes — parsed, never raw strings), [`error`]
//! (every error type), [`timeline`] (phases at step boundaries), [`steps`] (the boundaries a
//! strategy marks), [`stop`] (the stop signal), [`backoff`], [`metrics`], [`logging`].

pub mod app;
pub mod backoff;
pub mod bench;
pub mod chaos;
pub mod check_db;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod exit;
pub mod http;
pub mod interleave;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod processes;
pub mod race;
pub mod repo;
pub mod report;
pub mod run;
pub mod sql_text;
pub mod steps;
pub mod stop;
pub mod strategy;
pub mod sync;
pub mod targets;
pub mod timeline;
