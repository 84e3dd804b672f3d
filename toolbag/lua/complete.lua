-- complete: the running attempt succeeded; record the result and wake waiters.
-- KEYS[1] job hash   KEYS[2] leases zset   KEYS[3] attempts list   KEYS[4] notify list
-- KEYS[5] deadlines zset   KEYS[6] audit stream
-- KEYS[7] stats hash (fleet-wide counters: field 'finished|<tier>|succeeded|<capability>')
-- ARGV[1] token   ARGV[2] output (json)   ARGV[3] result (json)   ARGV[4] attempt record (json)
-- ARGV[5] ttl of the finished job (s)
-- when the job names an inbox (field 'inbox', a list key), its id is also pushed there (completion feed)
-- returns {1, created_ms, finished_ms} or {0, status} when the attempt is no longer current
local f = redis.call('HMGET', KEYS[1], 'status', 'token', 'id', 'tier', 'capability', 'inbox', 'created_ms')
local status, token, id, inbox = f[1], f[2], f[3], f[6]
if status ~= 'running' or token ~= ARGV[1] then
  return {0, status or 'missing'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'status', 'succeeded', 'output', ARGV[2], 'result', ARGV[3],
           'finished_ms', now, 'outcome', 'ok')
redis.call('ZREM', KEYS[2], id .. ':' .. token)
redis.call('ZREM', KEYS[5], id)
redis.call('RPUSH', KEYS[3], ARGV[4])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', 100000, '*', 'kind', 'completed', 'job', id, 'token', ARGV[1])
redis.call('HINCRBY', KEYS[7], 'finished|' .. (f[4] or '') .. '|succeeded|' .. (f[5] or ''), 1)
redis.call('DEL', KEYS[4])
redis.call('LPUSH', KEYS[4], 'done')
local ttl = tonumber(ARGV[5])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('EXPIRE', KEYS[4], ttl)
if inbox then
  redis.call('LPUSH', inbox, id)
  redis.call('EXPIRE', inbox, ttl)
end
return {1, f[7], now}
