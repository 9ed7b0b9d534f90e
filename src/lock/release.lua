-- The lock's release: compare-and-delete, then wake the key's waiters.
-- Returns 1 when the key held our token (ARGV[1]) and was deleted, 0 when the key no longer
-- exists (it expired), -1 when it exists with another holder's token (it expired and was
-- re-taken). Only a real release publishes: the channel is the key's own name, and the
-- subscribers are the processes whose users are waiting for it (see src/lock/wake.rs).
-- scripts/bench.sh loads this very file into redis-benchmark, so the lock alone is measured
-- against the server running the same script.
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
    redis.call('DEL', KEYS[1])
    redis.call('PUBLISH', KEYS[1], '')
    return 1
elseif current == false then
    return 0
else
    return -1
end
