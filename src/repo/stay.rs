//! A whole stay booked in one statement (`one-statement`, and `reserve`'s hold).

use super::*;

/// The statement that books a whole stay at once, all nights or none (`one-statement`, and
/// `reserve`'s hold). Parameters: room, first night, day of departure, number of nights, user,
/// status (`confirmed` or `held`), the hold's lifetime in milliseconds (NULL: no expiry).
///
/// Why it cannot oversell, under READ COMMITTED:
/// - `stay` locks every night's row, in date order (so two stays that share nights take them
///   in the same order and cannot deadlock). A row another transaction is updating makes it
///   wait; once that one commits, PostgreSQL re-reads the row and returns its **newest**
///   version. So `verdict` judges every night on committed counts no other booking can change
///   before this statement ends — the check and the write are one critical section per night,
///   as in `row-lock`, without a round trip between them.
/// - `claimed` increments every night only if every night was free (all or none). Its snapshot
///   is the statement's, older than the rows `stay` waited for; PostgreSQL then re-applies the
///   update to the newest version (`booked_count + 1` on the committed count), under the lock
///   `stay` already holds.
/// - `booked` inserts the booking only if the nights were claimed.
///
/// One row comes back always: the new booking's id (or NULL), the nights found, and the first
/// full night (or NULL).
pub(super) const BOOK_STAY: &str = "
WITH stay AS MATERIALIZED (
    SELECT date, booked_count, total_inventory FROM inventory
    WHERE room_id = $1 AND date >= $2 AND date < $3
    ORDER BY date
    FOR UPDATE
), verdict AS (
    SELECT count(*) AS nights,
           min(date) FILTER (WHERE booked_count >= total_inventory) AS full_night
    FROM stay
), claimed AS (
    UPDATE inventory i SET booked_count = i.booked_count + 1
    FROM verdict v
    WHERE i.room_id = $1 AND i.date >= $2 AND i.date < $3
      AND v.nights = $4 AND v.full_night IS NULL
    RETURNING i.date
), booked AS (
    INSERT INTO bookings (user_id, room_id, start_date, end_date, status, expires_at)
    SELECT $5, $1, $2, $3, $6,
           clock_timestamp() + make_interval(secs => $7::double precision / 1000)
    WHERE EXISTS (SELECT 1 FROM claimed)
    RETURNING id
)
SELECT (SELECT id FROM booked), v.nights, v.full_night FROM verdict v";

/// [`BOOK_STAY`] for a stay of one night, with the same parameters: one conditional update,
/// whose condition PostgreSQL re-evaluates on the newest version of the row after waiting for
/// a concurrent writer (as `atomic`'s), feeding the insert. With one night there is no
/// all-or-none to enforce, so no row is locked before it is written: the statement does half
/// the row work of the general one. No row comes back when the night was full (or has no
/// inventory row).
pub(super) const BOOK_NIGHT: &str = "
WITH claimed AS (
    UPDATE inventory SET booked_count = booked_count + 1
    WHERE room_id = $1 AND date = $2 AND booked_count < total_inventory
    RETURNING date
)
INSERT INTO bookings (user_id, room_id, start_date, end_date, status, expires_at)
SELECT $5, $1, $2, $3, $6, clock_timestamp() + make_interval(secs => $7::double precision / 1000)
FROM claimed
RETURNING id";

/// What [`Repo::book_stay`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// Every night was free: the booking (or hold) with this id exists.
    Booked { booking_id: i64 },
    /// This night was full; nothing was written.
    Full { night: NaiveDate },
}

impl Repo {
    /// Books (or holds) a whole stay in one statement, all nights or none: see [`BOOK_STAY`]
    /// (and [`BOOK_NIGHT`] for a single night). For one night, [`Claimed::Full`] may also
    /// mean that the night has no inventory row: a caller that must tell them apart asks
    /// [`Repo::ensure_bookable`] (one more round trip, on refusals only).
    /// `hold` gives the booking status `held` and an expiry that far ahead.
    pub async fn book_stay(
        &self,
        request: &BookingRequest,
        hold: Option<Duration>,
    ) -> Result<Claimed, BookingError> {
        let (status, ttl_ms) = match hold {
            Some(ttl) => ("held", Some(ttl.as_millis() as f64)),
            None => ("confirmed", None),
        };
        if request.stay.len() == 1 {
            let id: Option<i64> = within(
                self.limit,
                sqlx::query_scalar(BOOK_NIGHT)
                    .bind(request.room.get())
                    .bind(request.stay.from())
                    .bind(request.stay.to())
                    .bind(1_i64)
                    .bind(request.user.as_uuid())
                    .bind(status)
                    .bind(ttl_ms)
                    .fetch_optional(&self.pool),
            )
            .await?;
            return Ok(match id {
                Some(booking_id) => Claimed::Booked { booking_id },
                None => Claimed::Full {
                    night: request.stay.from(),
                },
            });
        }
        let (id, nights, full): (Option<i64>, i64, Option<NaiveDate>) = within(
            self.limit,
            sqlx::query_as(BOOK_STAY)
                .bind(request.room.get())
                .bind(request.stay.from())
                .bind(request.stay.to())
                .bind(i64::from(request.stay.len()))
                .bind(request.user.as_uuid())
                .bind(status)
                .bind(ttl_ms)
                .fetch_one(&self.pool),
        )
        .await?;
        match (id, full) {
            (Some(booking_id), _) => Ok(Claimed::Booked { booking_id }),
            (None, Some(night)) => Ok(Claimed::Full { night }),
            (None, None) => {
                // Free, but not every night has a row: the first missing one is the error.
                debug_assert!(nights < i64::from(request.stay.len()));
                self.ensure_bookable(request.room, &request.stay).await?;
                Err(BookingError::Inconsistent(format!(
                    "room {} has {nights} of {} inventory rows for {}",
                    request.room,
                    request.stay.len(),
                    request.stay
                )))
            }
        }
    }
}
