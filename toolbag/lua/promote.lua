-- promote: a delayed job is due; enqueue it on its queue.
-- KEYS[1] job hash   KEYS[2] delayed zset   KEYS[3] queue list   KEYS[4] waiting zset of that queue
-- ARGV[1] expected token   ARGV[2] envelope
-- returns {1} or {0, reason}
local id = redis.call('HGET', KEYS[1], 'id')
if not id then return {0, 'missing'} end
local score = redis.call('ZSCORE', KEYS[2], id)
if not score then return {0, 'not delayed'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(score) > now then return {0, 'not due'} end
redis.call('ZREM', KEYS[2], id)
local status = redis.call('HGET', KEYS[1], 'status')
local token = redis.call('HGET', KEYS[1], 'token')
if status ~= 'waiting' or token ~= ARGV[1] then return {0, status} end
redis.call('HSET', KEYS[1], 'status', 'queued', 'enqueued_ms', now)
redis.call('LPUSH', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[4], now, id)
return {1}
