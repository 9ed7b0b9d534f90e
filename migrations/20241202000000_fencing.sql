-- The fencing token of each room-night: the largest token any lock holder has claimed for it.
-- `fenced` claims its token here before its check and writes only if no newer holder has claimed
-- the night since; a holder whose Redis lock expired mid-work is thereby refused by the storage.
ALTER TABLE inventory ADD COLUMN fence_token BIGINT NOT NULL DEFAULT 0;
