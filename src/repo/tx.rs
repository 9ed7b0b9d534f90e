//! [`BookingTx`]: the transaction of one booking, driven step by step by a strategy, so that
//! the *order* of the steps — what the strategies differ in — stays in the strategy's file.

use super::*;

impl Repo {
    /// Starts the transaction of one booking (READ COMMITTED, PostgreSQL's default).
    ///
    /// A pooled connection whose server went away (a restart, an idle timeout) fails its
    /// `BEGIN` — before anything of the booking was sent — and is closed on its way back to the
    /// pool (sqlx tests every released connection). So another is taken, up to once per pooled
    /// connection: a restart costs the bookings nothing instead of one failure per connection.
    pub async fn begin(&self) -> Result<BookingTx, sqlx::Error> {
        let tx = self.repeatable(|| self.pool.begin()).await?;
        Ok(BookingTx {
            tx,
            limit: self.limit,
        })
    }
}

/// The transaction of one booking, driven step by step by a strategy. Dropping it without
/// [`commit`](BookingTx::commit) rolls it back.
pub struct BookingTx {
    tx: Transaction<'static, Postgres>,
    /// The client-side deadline of every statement.
    limit: Duration,
}

impl BookingTx {
    /// Runs `query` in this transaction, under the deadline.
    async fn run(
        &mut self,
        query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<(), sqlx::Error> {
        within(self.limit, query.execute(&mut *self.tx))
            .await
            .map(drop)
    }

    /// The availability check: reads every night of the stay. A night without an inventory row
    /// is an input error, never "available": [`InputError::UnknownRoom`] when the room does not
    /// exist, else [`InputError::NoInventory`].
    ///
    /// This is a plain read: nothing stops another transaction from reading the same
    /// `booked_count` at the same time. That is the race the naive strategy demonstrates.
    pub async fn availability(
        &mut self,
        room: RoomId,
        stay: &Stay,
    ) -> Result<Availability, BookingError> {
        let rows: Vec<(NaiveDate, Option<i32>, Option<i32>)> = within(
            self.limit,
            sqlx::query_as(
                "SELECT d::date, i.total_inventory, i.booked_count
             FROM generate_series($2::date, $3::date - 1, interval '1 day') AS d
             LEFT JOIN inventory i ON i.room_id = $1 AND i.date = d::date
             ORDER BY d",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to())
            .fetch_all(&mut *self.tx),
        )
        .await?;
        let mut counts = Vec::with_capacity(rows.len());
        for (night, total, booked) in rows {
            let (Some(total), Some(booked)) = (total, booked) else {
                // Bad input only: one more round trip to say which it is.
                let room_exists: bool = within(
                    self.limit,
                    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1)")
                        .bind(room.get())
                        .fetch_one(&mut *self.tx),
                )
                .await?;
                return Err(if room_exists {
                    InputError::NoInventory { room, night }
                } else {
                    InputError::UnknownRoom { room }
                }
                .into());
            };
            if booked >= total {
                return Ok(Availability::SoldOut { night });
            }
            counts.push((night, booked));
        }
        Ok(Availability::Free { booked: counts })
    }

    /// `booked_count = booked_count + 1` on every night of the stay. The increment itself is
    /// atomic in the database; what makes the naive flow unsafe is that the *decision* to
    /// increment was taken on a value read earlier.
    pub async fn increment_booked(
        &mut self,
        room: RoomId,
        stay: &Stay,
    ) -> Result<(), BookingError> {
        let updated = within(
            self.limit,
            sqlx::query(
                "UPDATE inventory SET booked_count = booked_count + 1
             WHERE room_id = $1 AND date >= $2 AND date < $3",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to())
            .execute(&mut *self.tx),
        )
        .await?
        .rows_affected();
        if updated != u64::from(stay.len()) {
            // The check saw a row for every night; only a concurrent `db reset` removes rows.
            return Err(BookingError::Inconsistent(format!(
                "expected to update {} inventory rows of room {room}, updated {updated}",
                stay.len()
            )));
        }
        Ok(())
    }

    /// Makes this transaction SERIALIZABLE; must be its first statement.
    pub async fn set_serializable(&mut self) -> Result<(), sqlx::Error> {
        self.run(sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
            .await
    }

    /// `SELECT … FOR UPDATE` on every night's inventory row, in date order: from here to the
    /// end of the transaction, every other transaction that wants these rows waits.
    pub async fn lock_nights_for_update(
        &mut self,
        room: RoomId,
        stay: &Stay,
    ) -> Result<(), sqlx::Error> {
        self.run(
            sqlx::query(
                "SELECT 1 FROM inventory
             WHERE room_id = $1 AND date >= $2 AND date < $3
             ORDER BY date FOR UPDATE",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to()),
        )
        .await
    }

    /// Takes the transaction-scoped advisory lock of one room-night (released at commit or
    /// rollback). Advisory locks are shared by every application of the database, so the key is
    /// not a bare (room, day) pair another application might use too: it is the 64-bit hash of
    /// `booking_cli:room:{room}:{night}`, a key no other application would choose.
    pub async fn advisory_lock_night(
        &mut self,
        room: RoomId,
        night: NaiveDate,
    ) -> Result<(), sqlx::Error> {
        self.run(
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("booking_cli:room:{room}:{night}")),
        )
        .await
    }

    /// Writes `booked_count = value` on one night: a blind write of a value computed from an
    /// earlier read (the lost-update anti-pattern).
    pub async fn set_booked(
        &mut self,
        room: RoomId,
        night: NaiveDate,
        value: i32,
    ) -> Result<(), sqlx::Error> {
        self.run(
            sqlx::query("UPDATE inventory SET booked_count = $3 WHERE room_id = $1 AND date = $2")
                .bind(room.get())
                .bind(night)
                .bind(value),
        )
        .await
    }

    /// The check and the write as one statement: increments one night only if it still has a
    /// room. PostgreSQL re-evaluates the condition on the newest row version after waiting for
    /// a concurrent writer, so two transactions can never both take the last room. Returns
    /// whether the night was taken; a missing inventory row is an input error.
    pub async fn increment_if_free(
        &mut self,
        room: RoomId,
        night: NaiveDate,
    ) -> Result<bool, BookingError> {
        let updated = within(
            self.limit,
            sqlx::query(
                "UPDATE inventory SET booked_count = booked_count + 1
             WHERE room_id = $1 AND date = $2 AND booked_count < total_inventory",
            )
            .bind(room.get())
            .bind(night)
            .execute(&mut *self.tx),
        )
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(true);
        }
        let exists: bool = within(
            self.limit,
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM inventory WHERE room_id = $1 AND date = $2)",
            )
            .bind(room.get())
            .bind(night)
            .fetch_one(&mut *self.tx),
        )
        .await?;
        if exists {
            Ok(false)
        } else {
            Err(InputError::NoInventory { room, night }.into())
        }
    }

    /// The fenced write: increments one night only if no holder with a newer token has claimed
    /// it since this holder did. Returns whether the write was accepted.
    pub async fn increment_if_fenced(
        &mut self,
        room: RoomId,
        night: NaiveDate,
        token: i64,
    ) -> Result<bool, sqlx::Error> {
        let updated = within(
            self.limit,
            sqlx::query(
                "UPDATE inventory SET booked_count = booked_count + 1
             WHERE room_id = $1 AND date = $2 AND fence_token = $3",
            )
            .bind(room.get())
            .bind(night)
            .bind(token)
            .execute(&mut *self.tx),
        )
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Inserts the `confirmed` booking row and returns its id.
    pub async fn insert_booking(&mut self, req: &BookingRequest) -> Result<i64, sqlx::Error> {
        within(
            self.limit,
            sqlx::query_scalar(
                "INSERT INTO bookings (user_id, room_id, start_date, end_date, status)
             VALUES ($1, $2, $3, $4, 'confirmed')
             RETURNING id",
            )
            .bind(req.user.as_uuid())
            .bind(req.room.get())
            .bind(req.stay.from())
            .bind(req.stay.to())
            .fetch_one(&mut *self.tx),
        )
        .await
    }

    /// Commits within the deadline. A commit that times out may still have been applied — the
    /// server may have received it and be about to answer — so the caller reports an error,
    /// and the verdict, read from the database afterwards, shows what really happened.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        within(self.limit, self.tx.commit()).await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        within(self.limit, self.tx.rollback()).await
    }
}
