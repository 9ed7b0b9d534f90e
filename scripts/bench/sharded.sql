-- sharded: src/repo/shards.rs, TAKE_FREE_SHARD_OF_NIGHT (a stay of one night): lock one shard
-- of the night with a room left that nobody holds (FOR UPDATE SKIP LOCKED), increment it,
-- insert the booking. (The tool's second statement, which waits, runs only when no shard was
-- free.)
\set room random(1, 10)
\set d random(0, 16)
WITH picked AS MATERIALIZED (
    SELECT shard FROM booking_cli.inventory_shards
    WHERE room_id = :room AND date = '2024-12-20'::date + :d::int AND booked < capacity
    ORDER BY random()
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE booking_cli.inventory_shards i SET booked = i.booked + 1
    FROM picked p
    WHERE i.room_id = :room AND i.date = '2024-12-20'::date + :d::int AND i.shard = p.shard
    RETURNING i.date
)
INSERT INTO booking_cli.bookings (user_id, room_id, start_date, end_date)
SELECT gen_random_uuid(), :room, date, date + 1 FROM claimed
RETURNING id;
