// The distributed semaphore's state in Redis, and the Lua scripts that are its
// only writers: each runs atomically, reads the time from Redis (TIME), never
// from a client, and first purges what has expired.
//
// KEYS, all with the hash tag {name} so that they live in one slot:
//   1 holders  ZSET  id -> lease expiry (ms, Redis time)
//   2 owners   HASH  id -> "n fence"
//   3 queue    ZSET  id -> arrival sequence (FIFO order)
//   4 beats    ZSET  id -> heartbeat expiry of a waiter (ms)
//   5 wants    HASH  id -> "n lease_ms"
//   6 meta     HASH  capacity, used, fence (last token), seq (last arrival)
//   7 channel  (pub/sub) the ids granted from the queue are published here
//
// Scripts: acquire, release (also a cancelled waiter's leave), renew,
// set_capacity, stats.
#include "semaphore_scripts.hpp"

namespace tame::redis::detail {
namespace {

// Shared by every script.
constexpr const char* prelude = R"lua(
local holders, owners, queue, beats, wants, meta, channel =
    KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function split(text)
    local a, b = string.match(text, '^(%d+) (%d+)$')
    return tonumber(a), tonumber(b)
end

local function used()
    return tonumber(redis.call('HGET', meta, 'used') or '0')
end

local function capacity(default)
    local cap = redis.call('HGET', meta, 'capacity')
    if not cap and default then
        redis.call('HSET', meta, 'capacity', default)
        cap = default
    end
    return tonumber(cap or '0')
end

local function drop_holder(id)
    local owned = redis.call('HGET', owners, id)
    if not owned then
        return false
    end
    local n = split(owned)
    redis.call('HDEL', owners, id)
    redis.call('ZREM', holders, id)
    redis.call('HINCRBY', meta, 'used', -n)
    return true
end

local function drop_waiter(id)
    redis.call('ZREM', queue, id)
    redis.call('ZREM', beats, id)
    redis.call('HDEL', wants, id)
end

-- Leases that ran out give their permits back; waiters whose heartbeat
-- stopped leave the queue.
local function purge(now)
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', holders, '-inf', now)) do
        drop_holder(id)
    end
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', beats, '-inf', now)) do
        drop_waiter(id)
    end
end

local function hold(id, n, lease, now)
    local fence = redis.call('HINCRBY', meta, 'fence', 1)
    redis.call('ZADD', holders, now + lease, id)
    redis.call('HSET', owners, id, n .. ' ' .. fence)
    redis.call('HINCRBY', meta, 'used', n)
    return fence
end

-- Grants from the head of the queue while the head fits: strictly FIFO, so a
-- large request at the head is not overtaken by smaller ones behind it.
local function serve(now, cap)
    while true do
        local head = redis.call('ZRANGE', queue, 0, 0)
        if #head == 0 then
            return
        end
        local id = head[1]
        local n, lease = split(redis.call('HGET', wants, id) or '0 0')
        if used() + n > cap then
            return
        end
        drop_waiter(id)
        hold(id, n, lease, now)
        redis.call('PUBLISH', channel, id)
    end
end

local function nearest_expiry(now, fallback)
    local first = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')
    if #first == 0 then
        return fallback
    end
    return math.max(1, math.min(fallback, tonumber(first[2]) - now))
end
)lua";

// ARGV: id, n, lease_ms, default capacity, mode ("wait" or "try"), heartbeat_ms.
// Returns {1, fence} when the caller holds n permits (a new grant, or one it
// already held, renewed); {0, ms} when it waits in the queue, with when to look
// again; {-1} when "try" found no room; {-2, capacity} when n can never fit.
constexpr const char* acquire_body = R"lua(
local id, n, lease, mode, beat = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[5], tonumber(ARGV[6])
local now = now_ms()
purge(now)
local cap = capacity(ARGV[4])
serve(now, cap)
local owned = redis.call('HGET', owners, id)
if owned then
    local _, fence = split(owned)
    redis.call('ZADD', holders, now + lease, id)
    return {1, fence}
end
if n > cap then
    drop_waiter(id)
    return {-2, cap}
end
if not redis.call('ZSCORE', queue, id) then
    if redis.call('ZCARD', queue) == 0 and used() + n <= cap then
        return {1, hold(id, n, lease, now)}
    end
    if mode == 'try' then
        return {-1}
    end
    local seq = redis.call('HINCRBY', meta, 'seq', 1)
    redis.call('ZADD', queue, seq, id)
    redis.call('HSET', wants, id, n .. ' ' .. lease)
end
redis.call('ZADD', beats, now + beat, id)
return {0, nearest_expiry(now, math.floor(beat / 3))}
)lua";

// ARGV: id. Whatever the id holds or waits for goes: a holder gives its
// permits back; a waiter that gives up leaves the queue, and permits granted
// to it in the meantime go back too (one script for both, so that a grant
// racing a cancellation cannot slip between two). Returns 1 if permits were
// given back, else 0 (none held: the lease had run out, or never granted).
constexpr const char* release_body = R"lua(
local now = now_ms()
purge(now)
drop_waiter(ARGV[1])
local released = drop_holder(ARGV[1])
serve(now, capacity(nil))
if released then
    return 1
end
return 0
)lua";

// ARGV: id, lease_ms. Returns 1 if the lease was extended, 0 if it had
// already run out (the permits may be someone else's by now).
constexpr const char* renew_body = R"lua(
local now = now_ms()
purge(now)
if not redis.call('HGET', owners, ARGV[1]) then
    return 0
end
redis.call('ZADD', holders, now + tonumber(ARGV[2]), ARGV[1])
return 1
)lua";

// ARGV: capacity. Waiters that now fit are granted at once.
constexpr const char* set_capacity_body = R"lua(
local now = now_ms()
purge(now)
redis.call('HSET', meta, 'capacity', ARGV[1])
serve(now, tonumber(ARGV[1]))
return used()
)lua";

// ARGV: default capacity. Returns {capacity, used, holders, waiting}.
constexpr const char* stats_body = R"lua(
local now = now_ms()
purge(now)
local cap = capacity(ARGV[1])
serve(now, cap)
return {cap, used(), redis.call('ZCARD', holders), redis.call('ZCARD', queue)}
)lua";

script with_prelude(const char* body)
{
    return script{std::string{prelude} + body};
}

} // namespace

const semaphore_scripts& semaphore_scripts::get()
{
    static const semaphore_scripts scripts{
        with_prelude(acquire_body), with_prelude(release_body), with_prelude(renew_body),
        with_prelude(set_capacity_body), with_prelude(stats_body)};
    return scripts;
}

command semaphore_keys(const std::string& name)
{
    const std::string prefix = "tame:sem:{" + name + "}:";
    return {prefix + "holders", prefix + "owners", prefix + "queue",  prefix + "beats",
            prefix + "wants",   prefix + "meta",   prefix + "granted"};
}

} // namespace tame::redis::detail
