-- `sharded` splits a room-night's rooms over several rows, so that concurrent bookings of one
-- night lock different rows instead of queueing behind one. A night's rooms are still its
-- inventory row's total_inventory; its shards' capacities add up to it (as seeded), and the
-- night's booked_count is the inventory row's plus its shards' (the verdict reads that sum).
-- Only `sharded` books on shards; nothing ties booked to capacity, so that the verdict — not a
-- constraint — is what catches a shard sold twice.
CREATE TABLE inventory_shards (
    room_id  INTEGER NOT NULL,
    date     DATE    NOT NULL,
    shard    INTEGER NOT NULL CHECK (shard >= 0),
    capacity INTEGER NOT NULL CHECK (capacity >= 0),
    booked   INTEGER NOT NULL DEFAULT 0 CHECK (booked >= 0),
    PRIMARY KEY (room_id, date, shard),
    FOREIGN KEY (room_id, date) REFERENCES inventory (room_id, date) ON DELETE CASCADE
);
