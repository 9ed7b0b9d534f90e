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
//! - [`cli`]: the command line, as clap types (parsing only).
//! - [`config`]: validated settings built from the command line; URL masking.
//! - [`domain`]: rooms, users, stays and outcomes — parsed, never raw strings.
//! - [`db`]: connecting (with time-outs) and `db reset`.
//! - [`repo`]: the repository — the only place SQL lives.
//! - [`lock`]: the Redis lock (`SET NX PX` + Lua compare-and-delete).
//! - [`strategy`]: one file per way of booking, behind the [`strategy::Strategy`] trait.
//! - [`run`]: the runner — a [`run::Target`] driven by users released together — its plan,
//!   its tally (one map of outcomes) and the invariant its verdicts come from.
//! - [`targets`]: what the runner drives: booking-cli's strategies, its own `serve`, anyone's
//!   HTTP endpoint (`race`).
//! - [`race`]: `race`'s settings and request templates (a burst at anyone's endpoint).
//! - [`sync`]: synchronised delivery — a burst released so that it arrives together.
//! - [`check_db`]: the user's own database, read through the checks they give, read-only.
//! - [`interleave`]: two or three users run step by step through every ordering of their steps.
//! - [`timeline`]: every user's phases, measured at the step boundaries (`--timeline`, `--trace`).
//! - [`processes`]: `--processes N`: worker processes released together.
//! - [`steps`]: the step boundaries a strategy marks, where `interleave` pauses it.
//! - [`stop`]: the Ctrl-C stop signal.
//! - [`report`]: tables and JSON, generic over `impl Write`.
//! - [`app`]: dispatches a command, chooses the exit status.
//! - [`cmd`]: one module per command (`db reset`, `book`, `stress` and its workers, `bench`).
//! - [`chaos`]: `--chaos FAULT@MS`, faults injected into a running stress.
//! - [`bench`]: `bench lock`, the lock alone at full speed.
//! - [`backoff`]: exponential backoff with full jitter.
//! - [`metrics`]: latency histograms.
//! - [`error`]: the library's error types.

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
