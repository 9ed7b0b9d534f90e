-- The hotel: room types, their inventory per night, and the bookings made against it.
--
-- Deliberately NO constraint ties booked_count to total_inventory, and nothing ties
-- bookings to inventory: the naive strategy must be able to overbook, and booking-cli
-- detects overbooking by querying this state after a run, never by trusting its own tallies.

CREATE TABLE rooms (
    id   INTEGER PRIMARY KEY CHECK (id > 0),
    name TEXT    NOT NULL
);

CREATE TABLE inventory (
    room_id         INTEGER NOT NULL REFERENCES rooms (id),
    date            DATE    NOT NULL,
    total_inventory INTEGER NOT NULL CHECK (total_inventory >= 0),
    booked_count    INTEGER NOT NULL DEFAULT 0 CHECK (booked_count >= 0),
    UNIQUE (room_id, date)
);

CREATE TABLE bookings (
    id         BIGSERIAL   PRIMARY KEY,
    user_id    UUID        NOT NULL,
    room_id    INTEGER     NOT NULL REFERENCES rooms (id),
    start_date DATE        NOT NULL,
    -- exclusive: a stay from 2024-12-25 to 2024-12-26 is the single night of the 25th
    end_date   DATE        NOT NULL,
    status     TEXT        NOT NULL DEFAULT 'confirmed' CHECK (status IN ('confirmed', 'cancelled')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (end_date > start_date)
);

-- The verdict queries count confirmed bookings that cover one night of one room.
CREATE INDEX bookings_room_stay ON bookings (room_id, start_date, end_date) WHERE status = 'confirmed';
