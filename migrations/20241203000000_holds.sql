-- `reserve` books in two steps: a hold (status 'held', counted in booked_count, with an
-- expires_at), then a confirmation once the slow work (the payment) succeeded. A hold whose
-- payment failed is 'cancelled'; one that outlived expires_at is 'expired' when reclaimed. Both
-- give their nights back. confirmed_at lets the verdict find a confirmation made after expiry.
ALTER TABLE bookings DROP CONSTRAINT bookings_status_check;
ALTER TABLE bookings ADD CONSTRAINT bookings_status_check
    CHECK (status IN ('confirmed', 'cancelled', 'held', 'expired'));
ALTER TABLE bookings ADD COLUMN expires_at TIMESTAMPTZ, ADD COLUMN confirmed_at TIMESTAMPTZ;
-- Reclaiming looks for the holds of one room that have expired.
CREATE INDEX bookings_holds ON bookings (room_id, expires_at) WHERE status = 'held';
