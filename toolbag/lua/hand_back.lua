-- hand_back: a running job found no rate-limit capacity, so it goes back without a vendor attempt: to the
-- delayed set on the same model (throttle), or queued now on another candidate (spill). The attempt
-- number is unchanged; the token moves on, so the old delivery is stale.
-- KEYS[1] job hash   KEYS[2] leases zset   KEYS[3] attempts list
-- KEYS[4] target: the queue list (now) or the delayed zset (later)   KEYS[5] waiting zset of the queue
-- KEYS[6] audit stream
-- ARGV[1] token   ARGV[2] new token   ARGV[3] model   ARGV[4] provider   ARGV[5] queue name
-- ARGV[6] envelope (when now)   ARGV[7] decision record (json)   ARGV[8] delay (ms; 0 = now)
-- ARGV[9] audit it (1/0)
-- returns {1} or {0, status}; the lease member <id>:<token> is removed either way
local f = redis.call('HMGET', KEYS[1], 'id', 'status', 'token')
local id, status, token = f[1], f[2], f[3]
if id then redis.call('ZREM', KEYS[2], id .. ':' .. ARGV[1]) end
if status ~= 'running' or token ~= ARGV[1] then
  return {0, status or 'missing'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local delay = tonumber(ARGV[8])
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'model', ARGV[3], 'provider', ARGV[4], 'queue', ARGV[5])
redis.call('RPUSH', KEYS[3], ARGV[7])
if ARGV[9] == '1' then
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', 100000, '*', 'kind', 'decision', 'job', id, 'record', ARGV[7])
end
if delay > 0 then
  redis.call('HSET', KEYS[1], 'status', 'waiting', 'due_ms', now + delay)
  redis.call('ZADD', KEYS[4], now + delay, id)
else
  redis.call('HSET', KEYS[1], 'status', 'queued', 'enqueued_ms', now)
  redis.call('LPUSH', KEYS[4], ARGV[6])
  redis.call('ZADD', KEYS[5], now, id)
end
return {1}
