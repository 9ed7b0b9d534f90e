-- one-statement: the whole booking of one night in one statement (src/repo.rs, BOOK_NIGHT): the
-- conditional increment feeding the insert. Its rate is the single-statement ceiling.
\set room random(1, 10)
\set d random(0, 16)
WITH claimed AS (
    UPDATE booking_cli.inventory SET booked_count = booked_count + 1
    WHERE room_id = :room AND date = '2024-12-20'::date + :d::int AND booked_count < total_inventory
    RETURNING date
)
INSERT INTO booking_cli.bookings (user_id, room_id, start_date, end_date, status, expires_at)
SELECT gen_random_uuid(), :room, date, date + 1, 'confirmed', NULL FROM claimed
RETURNING id;
