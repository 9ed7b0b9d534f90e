//! The server's side of the lab: health checks, lock waits, connection slots, fencing tokens
//! claimed in the database, and a backend ended on purpose.

use super::*;

impl Repo {
    /// A round trip to the server, within `limit` (a health check's own, shorter deadline).
    pub async fn ping(&self, limit: Duration) -> Result<(), sqlx::Error> {
        within(
            limit.min(self.limit),
            sqlx::query("SELECT 1").execute(&self.pool),
        )
        .await
        .map(|_| ())
    }

    /// The backends of this pool's application (its `application_name`, in this database) that
    /// wait for a lock another backend holds, with what they wait for (`wait_event`:
    /// `transactionid`, `tuple`, `advisory`, …). `interleave` gives each run an application name
    /// of its own, so these are its users' and nobody else's.
    pub async fn lock_waits(&self) -> Result<Vec<(i32, String)>, sqlx::Error> {
        within(
            self.limit,
            sqlx::query_as(
                "SELECT pid, coalesce(wait_event, 'lock') FROM pg_stat_activity
                 WHERE datname = current_database()
                   AND application_name = current_setting('application_name')
                   AND pid <> pg_backend_pid()
                   AND cardinality(pg_blocking_pids(pid)) > 0
                 ORDER BY pid",
            )
            .fetch_all(&self.pool),
        )
        .await
    }

    /// How many more client connections the server accepts right now (never negative).
    pub async fn spare_connections(&self) -> Result<u32, sqlx::Error> {
        let spare: i64 = within(
            self.limit,
            sqlx::query_scalar(
                "SELECT current_setting('max_connections')::bigint
                  - current_setting('superuser_reserved_connections')::bigint
                  - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
            )
            .fetch_one(&self.pool),
        )
        .await?;
        Ok(u32::try_from(spare.max(0)).unwrap_or(u32::MAX))
    }

    /// Claims one night for the lock holder with fencing token `token`, in its own short
    /// statement (not inside the booking's transaction, which would hold the row lock and turn
    /// this into `row-lock`). Only a token newer than every earlier claim is taken; an equal or
    /// older one gets [`Claim::Behind`] with the newest the night has seen — so two holders can
    /// never both own the same token, even after Redis lost its counter and hands one out
    /// again.
    pub async fn claim_fence(
        &self,
        room: RoomId,
        night: NaiveDate,
        token: i64,
    ) -> Result<Claim, BookingError> {
        let claimed: Option<i64> = within(
            self.limit,
            sqlx::query_scalar(
                "UPDATE inventory SET fence_token = $3
                 WHERE room_id = $1 AND date = $2 AND fence_token < $3
                 RETURNING fence_token",
            )
            .bind(room.get())
            .bind(night)
            .bind(token)
            .fetch_optional(&self.pool),
        )
        .await?;
        if claimed.is_some() {
            return Ok(Claim::Claimed);
        }
        let stored: Option<i64> = within(
            self.limit,
            sqlx::query_scalar(
                "SELECT fence_token FROM inventory WHERE room_id = $1 AND date = $2",
            )
            .bind(room.get())
            .bind(night)
            .fetch_optional(&self.pool),
        )
        .await?;
        match stored {
            Some(stored) => Ok(Claim::Behind { stored }),
            None => Err(InputError::NoInventory { room, night }.into()),
        }
    }

    /// Chaos: terminates the backend of one booking transaction of this database that is open
    /// and idle (a user in its hold). Returns its pid, if there was one.
    pub async fn terminate_one_open_booking(&self) -> Result<Option<i32>, sqlx::Error> {
        within(
            self.limit,
            sqlx::query_scalar(
                // The victim is chosen in a subquery with LIMIT, which PostgreSQL cannot flatten:
                // in one WHERE clause, the planner may call pg_terminate_backend before the other
                // conditions and kill backends that do not match them.
                "SELECT pid FROM (
                 SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'booking-cli'
                   AND state = 'idle in transaction' AND pid <> pg_backend_pid()
                 LIMIT 1
             ) AS victim
             WHERE pg_terminate_backend(pid)",
            )
            .fetch_optional(&self.pool),
        )
        .await
    }
}
