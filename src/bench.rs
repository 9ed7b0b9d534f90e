//! `bench lock`: the lock alone, as fast as it goes — acquire + release pairs on distinct keys
//! through the project's own lock code, from `concurrency` tasks sharing one multiplexed
//! connection. `scripts/bench.sh` sets the figure beside `redis-benchmark` running the same two
//! commands (`SET NX PX` and the release script) at the same concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::lock::{LockError, RedisLock};

/// What `bench lock` measured.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LockBench {
    pub concurrency: u32,
    /// Worker threads of the runtime the tasks ran on (`--threads`).
    pub threads: usize,
    pub pairs: u64,
    pub elapsed_ms: u128,
    pub pairs_per_sec: f64,
}

/// Runs acquire + release pairs from `concurrency` tasks for `duration`. Every key is new (task
/// number and counter), so no acquire ever finds a key held: this measures the lock's cost, not
/// contention.
pub async fn lock_pairs(
    lock: &RedisLock,
    concurrency: u32,
    duration: Duration,
) -> Result<LockBench, LockError> {
    let pairs = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for task in 0..concurrency {
        let (lock, pairs) = (lock.clone(), Arc::clone(&pairs));
        tasks.spawn(async move {
            let mut n: u64 = 0;
            while Instant::now() < deadline {
                let key = format!("{}bench:{task}:{n}", lock.key_prefix());
                n += 1;
                if let Some(guard) = lock.try_acquire(&key, Duration::from_secs(5)).await? {
                    lock.release(guard).await?;
                    pairs.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<(), LockError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok(result) = joined {
            result?;
        }
    }
    let elapsed = started.elapsed();
    let pairs = pairs.load(Ordering::Relaxed);
    Ok(LockBench {
        concurrency,
        threads: tokio::runtime::Handle::current().metrics().num_workers(),
        pairs,
        elapsed_ms: elapsed.as_millis(),
        pairs_per_sec: pairs as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
    })
}
