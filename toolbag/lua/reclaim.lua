-- reclaim: a pointer message was delivered to a worker that never claimed it (the worker died between
-- kombu's delivery and our claim), or vanished (popped by a worker killed before kombu recorded the
-- delivery). Re-enqueue the job with a new token and drop the orphaned delivery, if any, from kombu's
-- unacked set, so it is neither lost until the visibility timeout nor restored later.
-- KEYS[1] job hash   KEYS[2] queue list   KEYS[3] waiting zset of that queue   KEYS[4] attempts list
-- KEYS[5] kombu unacked_index zset   KEYS[6] kombu unacked hash
-- ARGV[1] token in the orphaned message   ARGV[2] new token   ARGV[3] envelope   ARGV[4] delivery tag ('' if none)
-- ARGV[5] record (json)
-- returns {1} or {0, status}
if ARGV[4] ~= '' then
  redis.call('ZREM', KEYS[5], ARGV[4])
  redis.call('HDEL', KEYS[6], ARGV[4])
end
local status = redis.call('HGET', KEYS[1], 'status')
local token = redis.call('HGET', KEYS[1], 'token')
if status ~= 'queued' or token ~= ARGV[1] then return {0, status or 'missing'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'enqueued_ms', now)
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], now, id)
redis.call('RPUSH', KEYS[4], ARGV[5])
return {1}
