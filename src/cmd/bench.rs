//! `bench lock`: the lock alone, acquire + release pairs per second, as one JSON object.

use std::io::Write;

use anyhow::Context as _;

use crate::cli::BenchLockArgs;
use crate::config::Connection;
use crate::exit::Exit;
use crate::report;

use super::{connect_redis, finish_output};

pub async fn run(connection: &Connection, args: &BenchLockArgs) -> anyhow::Result<Exit> {
    let lock = connect_redis(connection).await?;
    let measured = crate::bench::lock_pairs(&lock, args.concurrency, args.duration)
        .await
        .context("the lock benchmark failed")?;
    let mut out = std::io::stdout().lock();
    finish_output(report::write_json(&mut out, &measured).and_then(|()| out.flush()))?;
    Ok(Exit::Success)
}
