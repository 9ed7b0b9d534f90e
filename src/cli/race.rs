//! `race`'s flags (every one also a `--config` key).

use super::*;

/// `race`: a burst at anyone's endpoint, judged by their own database. Every value may also
/// come from `--config FILE` (TOML, the same names); a flag overrides the file.
#[derive(Debug, Args, Default)]
#[command(after_help = "\
Examples:
  booking-cli race --config race.toml                    # the gate, checked into your repo
  booking-cli race --config race.toml --expect violated  # a naive build must still break
  booking-cli race --url http://127.0.0.1:8000/book -d '{\"user\": \"{{uuid}}\", \"sku\": 42}' --success 201
      --check-db postgres://app@127.0.0.1/shop --repeat 20
      --setup \"update stock set sold = 0 where sku = 42; delete from orders where sku = 42\"
      --check \"select sku, sold, capacity from stock where sold > capacity\"
      --count \"select count(*) from orders where sku = 42\"        (one command)
  booking-cli race --url http://127.0.0.1:8000/book -H 'Authorization: Bearer {{env:TOKEN}}' ...
  booking-cli race --config shop.toml --success 302 --success-header 'Location: ^/orders/' -v

Placeholders in --url, -H, -d and --form: {{uuid}} {{user}} {{run}} {{env:NAME}} (env values are
masked), a --users-file column, a value a [[prepare]] step extracted. Settings: a flag, else
--config, else the environment. -v prints each answer (status, Location, the body's start);
-vv the [[prepare]] steps' too.
Verdicts: VIOLATED (a --check returned rows, successes > --max-successes, or more successes at
once than one by one under --baseline sequential), UNACCOUNTED (--count disagrees with the
successes acknowledged), UNTESTED (nothing broke, but fewer than --min-successes requests
succeeded), HELD (the checks found nothing). Held is met only with at most --allow-errors
requests unanswered or answered 5xx.
Exit status: 0 the expectation (--expect, default held) was met, 3 it was not, 1 runtime error
(the endpoint or the database unreachable), 2 bad input (nothing sent), 130 interrupted (Ctrl-C
or SIGTERM: the run in progress is not judged).")]
#[command(next_help_heading = "Request")]
pub struct RaceArgs {
    /// The endpoint (http:// or https://); placeholders allowed
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// The method [default: POST]
    #[arg(short = 'X', long, value_name = "METHOD")]
    pub method: Option<String>,

    /// A request header, 'Name: value' (repeatable; placeholders allowed in the value)
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// The request body (placeholders allowed); sent with Content-Type: application/json
    /// unless a -H names another
    #[arg(short = 'd', long, value_name = "BODY", conflicts_with = "data_file")]
    pub data: Option<String>,

    /// The request body, read from FILE (placeholders allowed)
    #[arg(long, value_name = "FILE", conflicts_with = "form")]
    pub data_file: Option<std::path::PathBuf>,

    /// A form field, 'name=value' (repeatable; placeholders allowed in the value): the body is
    /// sent url-encoded, as application/x-www-form-urlencoded
    #[arg(long, value_name = "NAME=VALUE", conflicts_with = "data")]
    pub form: Vec<String>,

    /// Statuses that count as an acknowledged success, e.g. 201,200 [default: any 2xx]
    #[arg(long, value_name = "CODES", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(100..=599), help_heading = "Burst")]
    pub success: Vec<u16>,

    /// A success must also carry this header matching REGEX, 'Name: REGEX' (repeatable), e.g.
    /// 'Location: ^/orders/' when a sale and a sell-out are both 302s. Redirects are never
    /// followed
    #[arg(long, value_name = "HEADER", help_heading = "Burst")]
    pub success_header: Vec<String>,

    /// A success's body must also match REGEX (its first 64 KiB)
    #[arg(long, value_name = "REGEX", help_heading = "Burst")]
    pub success_body: Option<String>,

    /// Each user's row of placeholders: a CSV file with a header row ({{username}},
    /// {{password}}); user i gets row i
    #[arg(long, value_name = "FILE", help_heading = "Burst")]
    pub users_file: Option<std::path::PathBuf>,

    /// Deadline of every user's [[prepare]] steps together [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Burst")]
    pub prepare_timeout: Option<std::time::Duration>,

    /// Users in the burst, each sending its request on a connection of its own opened before
    /// the start (with [[request]] entries in --config: each sends theirs) [default: 20]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000), help_heading = "Burst")]
    pub users: Option<u32>,

    /// Deadline of one request, connecting included [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Burst")]
    pub timeout: Option<std::time::Duration>,

    /// Runs, each after --setup; verdicts counted over them [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000), help_heading = "Burst")]
    pub repeat: Option<u32>,

    /// How the burst is released so that it arrives together: none, last-byte (all but each
    /// request's final byte sent before the start), single-packet (HTTP/2: every final frame
    /// in one write), auto (single-packet with --http2, else last-byte when there is a body)
    /// [default: auto]
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        hide_possible_values = true,
        help_heading = "Burst"
    )]
    pub sync: Option<crate::sync::Sync>,

    /// Speak HTTP/2 to the http:// endpoint, with prior knowledge (no upgrade); over https://
    /// it is negotiated (ALPN)
    #[arg(long, help_heading = "Burst")]
    pub http2: bool,

    /// Trust the certificates in FILE (PEM) for an https:// endpoint, besides the public roots
    #[arg(long, value_name = "FILE", help_heading = "Burst")]
    pub cacert: Option<std::path::PathBuf>,

    /// The service's own PostgreSQL, read only through the checks; else check-db in --config,
    /// else $CHECK_DATABASE_URL
    #[arg(long, value_name = "URL", help_heading = "Invariant")]
    pub check_db: Option<String>,

    /// A query whose every row is a violation (repeatable); runs in a READ ONLY transaction
    #[arg(long = "check", value_name = "SQL", help_heading = "Invariant")]
    pub checks: Vec<String>,

    /// Read the state back through the service's own API after each run: GET URL (the burst's
    /// headers; user 0's session), judged by the --check-jq at the same position (repeatable)
    #[arg(long = "check-url", value_name = "URL", help_heading = "Invariant")]
    pub check_url: Vec<String>,

    /// A jq expression on the --check-url's JSON that must be true ($before: the same URL read
    /// before the burst; $successes: the run's acknowledged successes), e.g. '.balance >= 0'
    #[arg(long = "check-jq", value_name = "EXPR", help_heading = "Invariant")]
    pub check_jq: Vec<String>,

    /// More acknowledged successes than N is a violation
    #[arg(long, value_name = "N", help_heading = "Invariant")]
    pub max_successes: Option<u64>,

    /// Fewer acknowledged successes than N in a run is UNTESTED, never HELD: a burst in which
    /// nobody got through (no session, no CSRF token, every request a 5xx) tested nothing
    /// [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000), help_heading = "Invariant")]
    pub min_successes: Option<u32>,

    /// Requests without an answer, or answered with a 5xx, that a held run may have; beyond
    /// it, held is not met (each may have written, or been the one that broke it) [default: 0]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000), help_heading = "Invariant")]
    pub allow_errors: Option<u32>,

    /// A query returning one number: what the service wrote, compared with the successes
    /// acknowledged (read before and after each run)
    #[arg(long, value_name = "SQL", help_heading = "Invariant")]
    pub count: Option<String>,

    /// SQL run before each run, e.g. resetting the stock (repeatable; the only SQL that writes)
    #[arg(long = "setup", value_name = "SQL", help_heading = "Invariant")]
    pub setup: Vec<String>,

    /// A shell command run before each run, after --setup (repeatable; sh -c), to reset a
    /// store that speaks no SQL: a file, an API, a queue. Non-zero stops the race (exit 1)
    #[arg(long = "setup-cmd", value_name = "CMD", help_heading = "Invariant")]
    pub setup_cmd: Vec<String>,

    /// Judge each run against the same requests sent one after another from the same start:
    /// more successes at once than one by one is a violation (no database needed; needs
    /// --setup or --setup-cmd to go back to the start)
    #[arg(long, value_enum, value_name = "MODE", help_heading = "Invariant")]
    pub baseline: Option<Baseline>,

    /// Statement time-out of every check, count and setup [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Invariant")]
    pub check_timeout: Option<std::time::Duration>,

    /// What the run must show: held (the CI gate), violated (the race reproduced), any
    /// [default: held]
    #[arg(long, value_enum, help_heading = "Invariant")]
    pub expect: Option<RaceExpect>,

    /// A TOML file holding any of these settings, and [[prepare]] steps and [[request]]
    /// entries (flags override it; it overrides the environment)
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub config: Option<std::path::PathBuf>,

    /// The JUnit suite's name [default: the --config file's stem]
    #[arg(long, value_name = "NAME", help_heading = "Output")]
    pub name: Option<String>,

    /// Print one JSON document instead of the tables
    #[arg(long, help_heading = "Output")]
    pub json: bool,

    /// Write a JUnit XML report (one test case per run) to FILE
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub junit: Option<std::path::PathBuf>,

    /// Print the result as a GitHub-flavoured Markdown table (for a job summary)
    #[arg(long, help_heading = "Output", conflicts_with = "json")]
    pub markdown: bool,
}

/// `race --expect`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum RaceExpect {
    /// Every run held: the checks found nothing, every success accounted for
    Held,
    /// At least one run violated the invariant: the race is reproduced
    Violated,
    /// Nothing in particular: a measurement
    Any,
}

/// `race --baseline`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    /// The same requests, one after another, from the same start
    Sequential,
}
