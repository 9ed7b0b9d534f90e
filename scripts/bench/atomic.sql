-- atomic: the conditional increment, then the insert.
\set room random(1, 10)
\set d random(0, 16)
BEGIN;
UPDATE booking_cli.inventory SET booked_count = booked_count + 1
 WHERE room_id = :room AND date = '2024-12-20'::date + :d::int AND booked_count < total_inventory;
INSERT INTO booking_cli.bookings (user_id, room_id, start_date, end_date, status)
VALUES (gen_random_uuid(), :room, '2024-12-20'::date + :d::int, '2024-12-20'::date + :d::int + 1, 'confirmed')
RETURNING id;
COMMIT;
