-- dispatch: the supervisor sends a deciding job to its next attempt, now or later.
-- KEYS[1] job hash   KEYS[2] deciding zset   KEYS[3] attempts list
-- KEYS[4] target queue list (now) or the delayed zset (later)   KEYS[5] waiting zset of the target queue
-- ARGV[1] expected token   ARGV[2] new token   ARGV[3] model   ARGV[4] provider   ARGV[5] queue name
-- ARGV[6] envelope (when now)   ARGV[7] decision record (json)   ARGV[8] delay (ms; 0 = now)
-- ARGV[9] feedback for the next attempt ('' for none)
-- returns {1} or {0, status}
local status = redis.call('HGET', KEYS[1], 'status')
local token = redis.call('HGET', KEYS[1], 'token')
if status ~= 'deciding' or token ~= ARGV[1] then
  return {0, status or 'missing'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = redis.call('HGET', KEYS[1], 'id')
local delay = tonumber(ARGV[8])
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'model', ARGV[3], 'provider', ARGV[4], 'queue', ARGV[5],
           'feedback', ARGV[9])
redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('ZREM', KEYS[2], id)
redis.call('RPUSH', KEYS[3], ARGV[7])
if delay > 0 then
  redis.call('HSET', KEYS[1], 'status', 'waiting', 'due_ms', now + delay)
  redis.call('ZADD', KEYS[4], now + delay, id)
else
  redis.call('HSET', KEYS[1], 'status', 'queued', 'enqueued_ms', now)
  redis.call('LPUSH', KEYS[4], ARGV[6])
  redis.call('ZADD', KEYS[5], now, id)
end
return {1}
