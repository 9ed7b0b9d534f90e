-- advisory: the night's transaction-scoped advisory lock (keyed, as src/repo.rs keys it, by the
-- hash of booking_cli:room:{room}:{night}), then the naive check and write. (concat_ws: pgbench would
-- substitute a :room inside a string literal.)
\set room random(1, 10)
\set d random(0, 16)
BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended(concat_ws(':', 'booking_cli', 'room', :room::int, '2024-12-20'::date + :d::int), 0));
SELECT n::date, i.total_inventory, i.booked_count
  FROM generate_series('2024-12-20'::date + :d::int, '2024-12-20'::date + :d::int + 1 - 1, interval '1 day') AS n
  LEFT JOIN booking_cli.inventory i ON i.room_id = :room AND i.date = n::date
  ORDER BY n;
UPDATE booking_cli.inventory SET booked_count = booked_count + 1
 WHERE room_id = :room AND date >= '2024-12-20'::date + :d::int AND date < '2024-12-20'::date + :d::int + 1;
INSERT INTO booking_cli.bookings (user_id, room_id, start_date, end_date, status)
VALUES (gen_random_uuid(), :room, '2024-12-20'::date + :d::int, '2024-12-20'::date + :d::int + 1, 'confirmed')
RETURNING id;
COMMIT;
