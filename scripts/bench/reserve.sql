-- reserve: the hold (one statement, src/repo.rs BOOK_NIGHT with status 'held'), then its
-- confirmation (CONFIRM_HOLD): two round trips, and between them, the payment holds nothing.
\set room random(1, 10)
\set d random(0, 16)
WITH claimed AS (
    UPDATE booking_cli.inventory SET booked_count = booked_count + 1
    WHERE room_id = :room AND date = '2024-12-20'::date + :d::int AND booked_count < total_inventory
    RETURNING date
)
INSERT INTO booking_cli.bookings (user_id, room_id, start_date, end_date, status, expires_at)
SELECT gen_random_uuid(), :room, date, date + 1, 'held', clock_timestamp() + interval '5 seconds'
FROM claimed
RETURNING id AS hold \gset
WITH now AS (SELECT clock_timestamp() AS t)
UPDATE booking_cli.bookings b SET status = 'confirmed', confirmed_at = now.t
FROM now
WHERE b.id = :hold AND b.status = 'held' AND b.expires_at > now.t;
