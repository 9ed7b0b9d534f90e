-- The lock's release script, as in src/lock/mod.rs (RELEASE_SCRIPT): redis-benchmark runs it with
-- EVALSHA beside SET NX PX, so the lock alone can be set against the server's own rate.
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
    return redis.call('DEL', KEYS[1])
elseif current == false then
    return 0
else
    return -1
end
