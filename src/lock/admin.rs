//! The lock service outside a booking: the lab's faults, health, what is left, `db drop`.

use super::*;

impl RedisLock {
    /// Chaos: `CLIENT PAUSE` — Redis answers no client for `duration` (on a cluster, no node
    /// does).
    pub async fn pause_server(&self, duration: Duration) -> Result<(), LockError> {
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        if self.is_cluster() {
            return self.pause_every_node(ms).await;
        }
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("ALL")
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// One `PING`, within the command time-out: is Redis answering?
    pub async fn ping(&self) -> Result<(), LockError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// What this lock handle (and its clones) did so far, and what happened to the process's
    /// release notifications.
    pub fn stats(&self) -> LockStats {
        let (dropped, resubscribed) = self.releases.health();
        LockStats {
            lock_notifications_dropped: dropped,
            lock_notifications_resubscribed: resubscribed,
            ..snapshot(&self.counters)
        }
    }

    /// Keys under this handle's prefix that match `lock:*`: after a clean run, none.
    pub async fn leftover_keys(&self) -> Result<Vec<String>, LockError> {
        self.scan(&format!("{}lock:*", glob_escape(&self.key_prefix)))
            .await
    }

    /// Deletes every key under this handle's prefix — locks, fence counters, holds — and
    /// nothing else (`db drop`); returns how many there were.
    pub async fn delete_all(&self) -> Result<u64, LockError> {
        let mut keys = self
            .scan(&format!("{}*", glob_escape(&self.key_prefix)))
            .await?;
        // Only what is under the prefix as it is written, whatever the glob matched: the
        // prefix ends in a separator ([`crate::config::key_prefix`]), so it is whole segments.
        keys.retain(|key| !self.key_prefix.is_empty() && key.starts_with(&*self.key_prefix));
        let mut deleted = 0;
        if self.is_cluster() {
            // A multi-key command must stay in one slot: one key at a time.
            for key in &keys {
                deleted += redis::cmd("UNLINK")
                    .arg(key)
                    .query_async::<u64>(&mut self.conn.clone())
                    .await?;
            }
            return Ok(deleted);
        }
        for batch in keys.chunks(1_000) {
            deleted += redis::cmd("UNLINK")
                .arg(batch)
                .query_async::<u64>(&mut self.conn.clone())
                .await?;
        }
        Ok(deleted)
    }

    /// Every key matching the glob `pattern`, by `SCAN` (never `KEYS`: it blocks the server).
    /// On a cluster, where a `SCAN` cursor belongs to one node and the client routes it to an
    /// arbitrary one, by `KEYS`, which the client sends to every primary and whose answers it
    /// joins: acceptable for the clusters this is meant for (the lab's own, a staging one),
    /// not for a large production keyspace.
    pub(super) async fn scan(&self, pattern: &str) -> Result<Vec<String>, LockError> {
        if self.is_cluster() {
            return Ok(redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut self.conn.clone())
                .await?);
        }
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut self.conn.clone())
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}

/// `text` matched literally in a Redis glob: `*`, `?`, `[`, `]` and `\` escaped.
pub(super) fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
