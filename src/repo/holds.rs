//! `reserve`'s holds: reclaimed when expired, confirmed, released.

use super::stay::{BOOK_NIGHT, BOOK_STAY};
use super::*;

/// `reserve`: reclaims the expired holds that overlap a stay, giving back every night of each
/// (all their nights, not only the stay's), and counts the live holds on one night. Two
/// reclaimers of the same hold cannot both give it back: the second one's update waits for the
/// first, re-reads the row, finds it no longer `held` and skips it. Several expired holds on
/// one night are given back in one update of its row (a row is updated once per statement).
/// Parameters: room, first night, day of departure, the night to count live holds on.
pub(super) const RECLAIM_HOLDS: &str = "
WITH expired AS (
    UPDATE bookings SET status = 'expired'
    WHERE room_id = $1 AND status = 'held' AND expires_at <= clock_timestamp()
      AND start_date < $3 AND end_date > $2
    RETURNING start_date, end_date
), nights AS (
    SELECT d::date AS date, count(*) AS holds
    FROM expired, generate_series(expired.start_date, expired.end_date - 1, interval '1 day') AS d
    GROUP BY 1
), given_back AS (
    UPDATE inventory i SET booked_count = i.booked_count - n.holds
    FROM nights n
    WHERE i.room_id = $1 AND i.date = n.date
    RETURNING i.date
)
SELECT (SELECT count(*) FROM expired),
       (SELECT count(*) FROM bookings
        WHERE room_id = $1 AND status = 'held' AND expires_at > clock_timestamp()
          AND start_date <= $4 AND end_date > $4),
       (SELECT count(*) FROM inventory WHERE room_id = $1 AND date >= $2 AND date < $3)";

/// `reserve`: ends one hold — `cancelled` (its payment failed) or `expired` (it outlived its
/// expiry) — and gives its nights back, in one statement; nothing when it is no longer held
/// (a reclaimer ended it first).
pub(super) const RELEASE_HOLD: &str = "
WITH released AS (
    UPDATE bookings SET status = $2
    WHERE id = $1 AND status = 'held'
    RETURNING room_id, start_date, end_date
)
UPDATE inventory i SET booked_count = i.booked_count - 1
FROM released r
WHERE i.room_id = r.room_id AND i.date >= r.start_date AND i.date < r.end_date";

/// `reserve`: confirms one hold if it is still held and has not expired, at one instant (the
/// time checked is the time recorded, so a confirmation is never recorded after its expiry).
pub(super) const CONFIRM_HOLD: &str = "
WITH now AS (SELECT clock_timestamp() AS t)
UPDATE bookings b SET status = 'confirmed', confirmed_at = now.t
FROM now
WHERE b.id = $1 AND b.status = 'held' AND b.expires_at > now.t";

/// How a hold ended without a confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// Its payment failed.
    Cancelled,
    /// It outlived its expiry.
    Expired,
}

impl Repo {
    /// Reclaims expired holds over `stay` (see [`RECLAIM_HOLDS`]): how many were reclaimed,
    /// how many live holds cover `night`, and how many nights of the stay have an inventory
    /// row (fewer than the stay's: a bad stay, not a full one).
    pub async fn reclaim_holds(
        &self,
        room: RoomId,
        stay: &Stay,
        night: NaiveDate,
    ) -> Result<(i64, i64, i64), sqlx::Error> {
        within(
            self.limit,
            sqlx::query_as(RECLAIM_HOLDS)
                .bind(room.get())
                .bind(stay.from())
                .bind(stay.to())
                .bind(night)
                .fetch_one(&self.pool),
        )
        .await
    }

    /// Prepares the statements of `one-statement`, `reserve`, `sharded` and `batched` on up to
    /// `n` pooled connections
    /// before a race, by running each once on nothing: room 0 and booking 0 cannot exist (ids
    /// are positive), so nothing is read or written. Otherwise each user's first booking would
    /// also parse and plan them, all users at the same instant on the server's cores — the
    /// start of a race is what the reference run measures.
    pub async fn warm_statements(&self, n: u32) -> Result<(), sqlx::Error> {
        let n = n.min(self.pool.options().get_max_connections());
        let mut held = Vec::with_capacity(n as usize);
        for _ in 0..n {
            held.push(within(self.limit, self.pool.acquire()).await?);
        }
        let night = NaiveDate::default();
        for connection in &mut held {
            // The stay statements take a status and a hold's lifetime after the five
            // parameters they share with the shard statements.
            for (sql, holds) in [
                (BOOK_NIGHT, true),
                (BOOK_STAY, true),
                (shards::TAKE_FREE_SHARD, false),
                (shards::TAKE_FREE_SHARD_OF_NIGHT, false),
                (shards::WAIT_FOR_SHARD, false),
            ] {
                let mut query = sqlx::query(sql)
                    .bind(0_i32)
                    .bind(night)
                    .bind(night)
                    .bind(1_i64)
                    .bind(uuid::Uuid::nil());
                if holds {
                    query = query.bind("held").bind(Some(1.0_f64));
                }
                within(self.limit, query.execute(&mut **connection)).await?;
            }
            within(
                self.limit,
                sqlx::query(batch::BOOK_BATCH)
                    .bind(0_i32)
                    .bind(night)
                    .bind(night)
                    .bind(1_i64)
                    .bind(&[uuid::Uuid::nil()][..])
                    .execute(&mut **connection),
            )
            .await?;
            within(
                self.limit,
                sqlx::query(RECLAIM_HOLDS)
                    .bind(0_i32)
                    .bind(night)
                    .bind(night)
                    .bind(night)
                    .execute(&mut **connection),
            )
            .await?;
            within(
                self.limit,
                sqlx::query(CONFIRM_HOLD)
                    .bind(0_i64)
                    .execute(&mut **connection),
            )
            .await?;
            within(
                self.limit,
                sqlx::query(RELEASE_HOLD)
                    .bind(0_i64)
                    .bind("cancelled")
                    .execute(&mut **connection),
            )
            .await?;
        }
        Ok(())
    }

    /// Confirms hold `id`; `false` when it had expired (or was no longer held).
    pub async fn confirm_hold(&self, id: i64) -> Result<bool, sqlx::Error> {
        let confirmed = within(
            self.limit,
            sqlx::query(CONFIRM_HOLD).bind(id).execute(&self.pool),
        )
        .await?
        .rows_affected();
        Ok(confirmed == 1)
    }

    /// Ends hold `id` and gives its nights back; `false` when it was no longer held.
    pub async fn release_hold(&self, id: i64, end: HoldEnd) -> Result<bool, sqlx::Error> {
        let status = match end {
            HoldEnd::Cancelled => "cancelled",
            HoldEnd::Expired => "expired",
        };
        let nights = within(
            self.limit,
            sqlx::query(RELEASE_HOLD)
                .bind(id)
                .bind(status)
                .execute(&self.pool),
        )
        .await?
        .rows_affected();
        Ok(nights > 0)
    }
}
