//! The statements of `sharded`: a room-night's rooms split over several rows of
//! `inventory_shards`, and a booking that takes a room from whichever shard nobody holds.
//!
//! **Why shards.** Every safe strategy on one room-night serialises on that night's row: each
//! booking waits for the previous one's commit. Split the night's rooms over K rows and K
//! bookings can commit at once. The night's rooms are still its inventory row's
//! `total_inventory`; the shards' capacities add up to it, and the verdict reads the night's
//! `booked_count` as the row's plus its shards' ([`Repo::slot_state`](super::Repo::slot_state)).

use std::time::Duration;

use chrono::NaiveDate;
use sqlx::{PgConnection, Postgres, Transaction};

use super::{Repo, within};
use crate::domain::{BookingRequest, RoomId};

/// Splits the rooms of every night of `room` (every room: `None`) from `from` to `to`
/// (exclusive) over `shards` empty shards, replacing the ones it had: shard `s` gets
/// `total / shards` rooms, and one more while `s < total % shards` (inventory 5 over 8 shards
/// is 1, 1, 1, 1, 1, 0, 0, 0). With `shards = 0` the nights are left without shards.
const SPLIT: [&str; 2] = [
    "DELETE FROM inventory_shards
     WHERE ($1::int IS NULL OR room_id = $1) AND date >= $2 AND date < $3",
    "INSERT INTO inventory_shards (room_id, date, shard, capacity)
     SELECT i.room_id, i.date, s, i.total_inventory / $4 + (s < i.total_inventory % $4)::int
     FROM inventory i CROSS JOIN generate_series(0, $4 - 1) AS s
     WHERE ($1::int IS NULL OR i.room_id = $1) AND i.date >= $2 AND i.date < $3",
];

/// Splits the nights' rooms over `shards` shards (see [`SPLIT`]), in the caller's
/// transaction. Returns how many shard rows were written.
pub(super) async fn split(
    tx: &mut Transaction<'static, Postgres>,
    limit: Duration,
    room: Option<RoomId>,
    from: NaiveDate,
    to: NaiveDate,
    shards: u32,
) -> Result<u64, sqlx::Error> {
    let room = room.map(RoomId::get);
    let connection: &mut PgConnection = &mut *tx;
    within(
        limit,
        sqlx::query(SPLIT[0])
            .bind(room)
            .bind(from)
            .bind(to)
            .execute(&mut *connection),
    )
    .await?;
    if shards == 0 {
        return Ok(0);
    }
    let shards = i32::try_from(shards).unwrap_or(i32::MAX);
    Ok(within(
        limit,
        sqlx::query(SPLIT[1])
            .bind(room)
            .bind(from)
            .bind(to)
            .bind(shards)
            .execute(&mut *connection),
    )
    .await?
    .rows_affected())
}

/// One statement books a whole stay on shards, all nights or none: for each night, in date
/// order, one shard with a room left is locked (`FOR UPDATE`), then every locked shard is
/// incremented and the booking inserted — or, when a night got no shard, nothing is written
/// and the locks go at the statement's end.
///
/// `$lock` is what a booking does about a shard another transaction holds:
/// - `FOR UPDATE SKIP LOCKED` ([`Take::SkipBusy`]): passes it by, to the next shard with a
///   room. This is what lets K bookings of one night commit at once instead of queueing behind
///   one row: nobody waits while a free shard is left.
/// - `FOR UPDATE` ([`Take::Wait`]): waits for it. When the holder commits, PostgreSQL checks
///   the row's newest version against `booked < capacity` again and, if it is full now, moves
///   on to the next shard (a locking `LIMIT 1` keeps scanning). So the wait refuses only when
///   every shard is full: a room becomes free on a shard only by a decrement, which `sharded`
///   never makes, so every shard with a room now had one in the statement's snapshot.
///
/// Why it cannot oversell: a shard is incremented only under its row lock, after
/// `booked < capacity` was checked on the newest version of the row.
///
/// Why no deadlock: passing busy shards by never waits. Waiting does, and a shard it locked and
/// then found full stays locked to the end of the statement's transaction (PostgreSQL keeps a
/// row lock taken for a row the recheck then drops), so two waiters that locked shards in
/// different orders could each hold what the other waits for. The wait therefore goes in one
/// order, `(date, shard)`: nights in date order, each night's shards in shard order, so a
/// transaction waits only for a shard later than every shard it holds, and waits cannot form a
/// cycle. Passing by goes in random order: it spreads concurrent bookings over the shards
/// instead of all trying shard 0 first.
///
/// `$order` and `$lock` are the two variants' order and locking clause.
///
/// Parameters: room, first night, day of departure, nights, user. Returns the booking's id
/// (or NULL), the first night that got no shard, and the first night that has no shard rows.
macro_rules! take_shard {
    ($order:literal, $lock:literal) => {
        concat!(
            "
WITH nights AS MATERIALIZED (
    SELECT d::date AS date FROM generate_series($2::date, $3::date - 1, interval '1 day') AS d
), picked AS MATERIALIZED (
    SELECT n.date, s.shard
    FROM nights n
    CROSS JOIN LATERAL (
        SELECT shard FROM inventory_shards
        WHERE room_id = $1 AND date = n.date AND booked < capacity
        ORDER BY ",
            $order,
            "
        LIMIT 1
        ",
            $lock,
            "
    ) s
), claimed AS (
    UPDATE inventory_shards i SET booked = i.booked + 1
    FROM picked p
    WHERE i.room_id = $1 AND i.date = p.date AND i.shard = p.shard
      AND (SELECT count(*) FROM picked) = $4
    RETURNING i.date
), booked AS (
    INSERT INTO bookings (user_id, room_id, start_date, end_date)
    SELECT $5, $1, $2, $3 WHERE EXISTS (SELECT 1 FROM claimed)
    RETURNING id
)
SELECT (SELECT id FROM booked),
       (SELECT min(n.date) FROM nights n
        WHERE NOT EXISTS (SELECT 1 FROM picked p WHERE p.date = n.date)),
       (SELECT min(n.date) FROM nights n
        WHERE NOT EXISTS (SELECT 1 FROM inventory_shards s
                          WHERE s.room_id = $1 AND s.date = n.date))"
        )
    };
}

/// [`take_shard!`] passing busy shards by.
pub(super) const TAKE_FREE_SHARD: &str = take_shard!("random()", "FOR UPDATE SKIP LOCKED");
/// [`take_shard!`] waiting for busy shards.
pub(super) const WAIT_FOR_SHARD: &str = take_shard!("shard", "FOR UPDATE");

/// [`TAKE_FREE_SHARD`] for a stay of one night, with the same parameters: no nights to walk
/// and no all-or-none to enforce, so one locking scan of the night's shards feeds the
/// increment and the insert — half the work of the general statement, on the path every
/// booking of a flash sale takes. No row comes back when it found no free shard; the caller
/// then asks [`WAIT_FOR_SHARD`], which also tells a full night from one without shards.
pub(super) const TAKE_FREE_SHARD_OF_NIGHT: &str = "
WITH picked AS MATERIALIZED (
    SELECT shard FROM inventory_shards
    WHERE room_id = $1 AND date = $2 AND booked < capacity
    ORDER BY random()
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE inventory_shards i SET booked = i.booked + 1
    FROM picked p
    WHERE i.room_id = $1 AND i.date = $2 AND i.shard = p.shard AND $4 = 1
    RETURNING i.date
)
INSERT INTO bookings (user_id, room_id, start_date, end_date)
SELECT $5, $1, $2, $3 FROM claimed
RETURNING id";

/// What a booking does about a shard someone else holds (see [`take_shard!`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Passes it by.
    SkipBusy,
    /// Waits for it.
    Wait,
}

/// What [`Repo::take_shard`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardTake {
    /// Every night got a shard: the booking with this id exists.
    Booked { booking_id: i64 },
    /// This night got no shard — every shard with a room was busy ([`Take::SkipBusy`]), or
    /// none has a room ([`Take::Wait`]); nothing was written.
    Missed { night: NaiveDate },
    /// This night has no shards at all (not split: `db reset --shards 0`); nothing was written.
    NoShards { night: NaiveDate },
}

impl Repo {
    /// Books a stay on shards, all nights or none, in one statement (see [`take_shard!`], and
    /// [`TAKE_FREE_SHARD_OF_NIGHT`] for one night). [`ShardTake::Missed`] from
    /// [`Take::SkipBusy`] on one night may also mean the night has no shards: [`Take::Wait`]
    /// tells them apart.
    pub async fn take_shard(
        &self,
        request: &BookingRequest,
        take: Take,
    ) -> Result<ShardTake, sqlx::Error> {
        if take == Take::SkipBusy && request.stay.len() == 1 {
            let id: Option<i64> = within(
                self.limit,
                sqlx::query_scalar(TAKE_FREE_SHARD_OF_NIGHT)
                    .bind(request.room.get())
                    .bind(request.stay.from())
                    .bind(request.stay.to())
                    .bind(1_i64)
                    .bind(request.user.as_uuid())
                    .fetch_optional(&self.pool),
            )
            .await?;
            return Ok(match id {
                Some(booking_id) => ShardTake::Booked { booking_id },
                None => ShardTake::Missed {
                    night: request.stay.from(),
                },
            });
        }
        let sql = match take {
            Take::SkipBusy => TAKE_FREE_SHARD,
            Take::Wait => WAIT_FOR_SHARD,
        };
        let (id, missed, unsplit): (Option<i64>, Option<NaiveDate>, Option<NaiveDate>) = within(
            self.limit,
            sqlx::query_as(sql)
                .bind(request.room.get())
                .bind(request.stay.from())
                .bind(request.stay.to())
                .bind(i64::from(request.stay.len()))
                .bind(request.user.as_uuid())
                .fetch_one(&self.pool),
        )
        .await?;
        Ok(match (id, unsplit, missed) {
            (Some(booking_id), _, _) => ShardTake::Booked { booking_id },
            (None, Some(night), _) => ShardTake::NoShards { night },
            (None, None, Some(night)) => ShardTake::Missed { night },
            // Every night picked a shard, so the insert ran: unreachable, but not worth a panic.
            (None, None, None) => ShardTake::Missed {
                night: request.stay.from(),
            },
        })
    }
}
