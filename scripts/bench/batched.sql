-- batched: src/repo/batch.rs, BOOK_BATCH, for a stay of one night: one statement books a batch
-- of :batch users (pgbench -D batch=N; the bench passes the tool's mean batch), granting as
-- many as the night has left. bookings/s = tps × :batch.
\set room random(1, 10)
\set d random(0, 16)
WITH stay AS MATERIALIZED (
    SELECT date, total_inventory - booked_count AS free FROM booking_cli.inventory
    WHERE room_id = :room AND date >= '2024-12-20'::date + :d::int AND date < '2024-12-20'::date + :d::int + 1
    ORDER BY date
    FOR UPDATE
), users AS MATERIALIZED (
    SELECT array_agg(gen_random_uuid()) AS ids FROM generate_series(1, :batch)
), granted AS (
    SELECT count(*) AS nights,
           CASE WHEN count(*) = 1
                THEN greatest(0, least(min(free), (SELECT cardinality(ids) FROM users)))
                ELSE 0 END AS k
    FROM stay
), claimed AS (
    UPDATE booking_cli.inventory i SET booked_count = i.booked_count + g.k
    FROM granted g
    WHERE i.room_id = :room AND i.date >= '2024-12-20'::date + :d::int AND i.date < '2024-12-20'::date + :d::int + 1 AND g.k > 0
    RETURNING i.date
), booked AS (
    INSERT INTO booking_cli.bookings (user_id, room_id, start_date, end_date)
    SELECT w.user_id, :room, '2024-12-20'::date + :d::int, '2024-12-20'::date + :d::int + 1
    FROM users u, unnest(u.ids) WITH ORDINALITY AS w(user_id, arrival), granted g
    WHERE w.arrival <= g.k AND EXISTS (SELECT 1 FROM claimed)
    ORDER BY w.arrival
    RETURNING id, user_id
)
SELECT g.nights, g.k,
       (SELECT date FROM stay ORDER BY free, date LIMIT 1),
       (SELECT COALESCE(array_agg(id), '{}') FROM booked),
       (SELECT COALESCE(array_agg(user_id), '{}') FROM booked)
FROM granted g;
