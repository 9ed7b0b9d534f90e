-- lost-update: the naive check, then a blind write of the value read plus one.
\set room random(1, 10)
\set d random(0, 16)
BEGIN;
SELECT i.booked_count AS booked
  FROM generate_series('2024-12-20'::date + :d::int, '2024-12-20'::date + :d::int + 1 - 1, interval '1 day') AS n
  LEFT JOIN booking_cli.inventory i ON i.room_id = :room AND i.date = n::date
  ORDER BY n \gset
UPDATE booking_cli.inventory SET booked_count = :booked::int + 1 WHERE room_id = :room AND date = '2024-12-20'::date + :d::int;
INSERT INTO booking_cli.bookings (user_id, room_id, start_date, end_date, status)
VALUES (gen_random_uuid(), :room, '2024-12-20'::date + :d::int, '2024-12-20'::date + :d::int + 1, 'confirmed')
RETURNING id;
COMMIT;
