//! The statement of `batched`: one round trip books a whole batch of users on one stay.

use chrono::NaiveDate;
use sqlx::PgConnection;
use sqlx::pool::PoolConnection;
use uuid::Uuid;

use super::{Repo, within};
use crate::domain::{RoomId, Stay};

/// Books up to as many of the users in `$5` (in that order: arrival) as every night of the
/// stay has rooms left, all nights or none for each, in one statement.
///
/// The nights are locked first, in date order (`FOR UPDATE`: a concurrent batch or booking of
/// the same nights waits here, and after it waits it reads the newest `booked_count`), so the
/// grant `k = min(rooms left over the nights, users)` is computed on counts nobody else can
/// change before this statement commits. Every night then gets `booked_count + k` in one update
/// and the first `k` users get their rows. That is `one-statement`'s conditional write with a
/// `k` instead of a 1 — and why `batched` stays safe across processes and replicas: the
/// condition is in the statement, not in the process that batched it.
///
/// Parameters: room, first night, day of departure, nights, users. Returns how many nights have
/// an inventory row, `k`, the night with the fewest rooms left (the refused users' full night),
/// and the inserted rows' ids with their users.
pub(super) const BOOK_BATCH: &str = "
WITH stay AS MATERIALIZED (
    SELECT date, total_inventory - booked_count AS free FROM inventory
    WHERE room_id = $1 AND date >= $2 AND date < $3
    ORDER BY date
    FOR UPDATE
), granted AS (
    SELECT count(*) AS nights,
           CASE WHEN count(*) = $4
                THEN greatest(0, least(min(free), cardinality($5::uuid[])))
                ELSE 0 END AS k
    FROM stay
), claimed AS (
    UPDATE inventory i SET booked_count = i.booked_count + g.k
    FROM granted g
    WHERE i.room_id = $1 AND i.date >= $2 AND i.date < $3 AND g.k > 0
    RETURNING i.date
), booked AS (
    INSERT INTO bookings (user_id, room_id, start_date, end_date)
    SELECT w.user_id, $1, $2, $3
    FROM unnest($5::uuid[]) WITH ORDINALITY AS w(user_id, arrival), granted g
    WHERE w.arrival <= g.k AND EXISTS (SELECT 1 FROM claimed)
    ORDER BY w.arrival
    RETURNING id, user_id
)
SELECT g.nights, g.k,
       (SELECT date FROM stay ORDER BY free, date LIMIT 1),
       (SELECT COALESCE(array_agg(id), '{}') FROM booked),
       (SELECT COALESCE(array_agg(user_id), '{}') FROM booked)
FROM granted g";

/// What one [`Repo::book_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Nights of the stay that have an inventory row (fewer than the stay's: nothing written).
    pub nights: i64,
    /// The bookings made: each user's booking id (a user who came twice gets two).
    pub booked: Vec<(Uuid, i64)>,
    /// The night with the fewest rooms left when the batch ran: where the refused users' stay
    /// was full.
    pub tightest: Option<NaiveDate>,
}

impl Repo {
    /// A connection for a combiner to keep while it has batches to send: checking one out of
    /// the pool and back for every statement is client work between two batches, and the
    /// night's row waits for it.
    pub async fn combiner_connection(&self) -> Result<PoolConnection<sqlx::Postgres>, sqlx::Error> {
        within(self.limit, self.pool.acquire()).await
    }

    /// Books `users` (in arrival order) on one stay in one statement on `conn`: the first as
    /// many as the stay has rooms (see [`BOOK_BATCH`]).
    pub async fn book_batch(
        &self,
        conn: &mut PgConnection,
        room: RoomId,
        stay: &Stay,
        users: &[Uuid],
    ) -> Result<Batch, sqlx::Error> {
        type Row = (i64, i32, Option<NaiveDate>, Vec<i64>, Vec<Uuid>);
        let (nights, _granted, tightest, ids, owners): Row = within(
            self.limit,
            sqlx::query_as(BOOK_BATCH)
                .bind(room.get())
                .bind(stay.from())
                .bind(stay.to())
                .bind(i64::from(stay.len()))
                .bind(users)
                .fetch_one(conn),
        )
        .await?;
        Ok(Batch {
            nights,
            booked: owners.into_iter().zip(ids).collect(),
            tightest,
        })
    }
}
