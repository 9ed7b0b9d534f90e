//! A slot's state: checking a stay can be booked, preparing a slot for a race, and reading
//! back what it holds.

use super::*;

impl Repo {
    /// Checks, without writing, that the room exists and every night of the stay has an
    /// inventory row; the first failure is the error.
    pub async fn ensure_bookable(&self, room: RoomId, stay: &Stay) -> Result<(), BookingError> {
        // One round trip: it also runs on the refusal path of `one-statement` and `reserve`.
        let (exists, missing): (bool, Option<NaiveDate>) = self
            .repeatable(|| {
            sqlx::query_as(
                "SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1),
                        (SELECT d::date FROM generate_series($2::date, $3::date - 1, interval '1 day') AS d
                         WHERE NOT EXISTS (SELECT 1 FROM inventory i
                                           WHERE i.room_id = $1 AND i.date = d::date)
                         ORDER BY d LIMIT 1)",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to())
            .fetch_one(&self.pool)
            })
            .await?;
        match (exists, missing) {
            (false, _) => Err(InputError::UnknownRoom { room }.into()),
            (true, Some(night)) => Err(InputError::NoInventory { room, night }.into()),
            (true, None) => Ok(()),
        }
    }

    /// Makes a slot ready for a run: every night gets `total_inventory = inventory` and
    /// `booked_count = 0`, its rooms split again over `shards` empty shards (for `sharded`),
    /// and the bookings that touch those nights are deleted, in one transaction. Returns how
    /// many bookings were deleted.
    pub async fn prepare_slot(
        &self,
        room: RoomId,
        stay: &Stay,
        inventory: i32,
        shards: u32,
    ) -> Result<u64, sqlx::Error> {
        let mut tx = within(self.limit, self.pool.begin()).await?;
        let deleted = within(
            self.limit,
            sqlx::query(
                "DELETE FROM bookings WHERE room_id = $1 AND start_date < $3 AND end_date > $2",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to())
            .execute(&mut *tx),
        )
        .await?
        .rows_affected();
        within(
            self.limit,
            sqlx::query(
                "UPDATE inventory SET total_inventory = $4, booked_count = 0, fence_token = 0
             WHERE room_id = $1 AND date >= $2 AND date < $3",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to())
            .bind(inventory)
            .execute(&mut *tx),
        )
        .await?;
        shards::split(
            &mut tx,
            self.limit,
            Some(room),
            stay.from(),
            stay.to(),
            shards,
        )
        .await?;
        within(self.limit, tx.commit()).await?;
        Ok(deleted)
    }

    /// Confirmed bookings of `room` whose stay overlaps `stay`: after a run, the bookings it
    /// made (preparing the slot deleted every earlier one), to account for every success the
    /// users were told of.
    pub async fn confirmed_bookings(&self, room: RoomId, stay: &Stay) -> Result<i64, sqlx::Error> {
        within(
            self.limit,
            sqlx::query_scalar(
                "SELECT count(*) FROM bookings
                 WHERE room_id = $1 AND status = 'confirmed' AND start_date < $3 AND end_date > $2",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to())
            .fetch_one(&self.pool),
        )
        .await
    }

    /// Reads the state of every night of a slot: the counter and the rows, side by side. The
    /// counter is the night's `booked_count` plus its shards' (`sharded` books on those).
    pub async fn slot_state(
        &self,
        room: RoomId,
        stay: &Stay,
    ) -> Result<Vec<NightState>, sqlx::Error> {
        let rows: Vec<(NaiveDate, i32, i32, i64, i64, i64)> = self
            .repeatable(|| {
                sqlx::query_as(
                    "SELECT i.date, i.total_inventory,
                    -- The night's counter: its row's and, for `sharded`, its shards'.
                    i.booked_count + COALESCE((SELECT sum(s.booked) FROM inventory_shards s
                                               WHERE s.room_id = i.room_id AND s.date = i.date), 0)::int,
                    (SELECT count(*) FROM bookings b
                     WHERE b.room_id = i.room_id AND b.status = 'confirmed'
                       AND b.start_date <= i.date AND b.end_date > i.date),
                    (SELECT count(*) FROM bookings b
                     WHERE b.room_id = i.room_id AND b.status = 'held'
                       AND b.start_date <= i.date AND b.end_date > i.date),
                    (SELECT count(*) FROM bookings b
                     WHERE b.room_id = i.room_id AND b.status = 'confirmed'
                       AND b.confirmed_at > b.expires_at
                       AND b.start_date <= i.date AND b.end_date > i.date)
             FROM inventory i
             WHERE i.room_id = $1 AND i.date >= $2 AND i.date < $3
             ORDER BY i.date",
                )
                .bind(room.get())
                .bind(stay.from())
                .bind(stay.to())
                .fetch_all(&self.pool)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(night, total_inventory, booked_count, confirmed_bookings, held, late)| {
                    NightState {
                        room,
                        night,
                        total_inventory,
                        booked_count,
                        confirmed_bookings,
                        held_bookings: held,
                        confirmed_after_expiry: late,
                    }
                },
            )
            .collect())
    }

    /// One booking by its id, if it exists.
    pub async fn booking(&self, id: i64) -> Result<Option<BookingRow>, sqlx::Error> {
        self.repeatable(|| {
            sqlx::query_as(
                "SELECT id, user_id, room_id, start_date, end_date, status, created_at
                 FROM bookings WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
        })
        .await
    }

    /// Whether the room exists.
    pub async fn room_exists(&self, room: RoomId) -> Result<bool, sqlx::Error> {
        self.repeatable(|| {
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1)")
                .bind(room.get())
                .fetch_one(&self.pool)
        })
        .await
    }
}
