-- finish: end a job without success (failed, escalated, expired, cancelled) and wake waiters.
-- KEYS[1] job hash   KEYS[2] leases zset   KEYS[3] deciding zset   KEYS[4] delayed zset
-- KEYS[5] deadlines zset   KEYS[6] notify list   KEYS[7] attempts list   KEYS[8] escalations zset
-- KEYS[9] waiting zset of the job's current queue   KEYS[10] audit stream   KEYS[11] resolved list
-- KEYS[12] stats hash (fleet-wide counters: field 'finished|<tier>|<status>|<capability>')
-- KEYS[13] webhook outbox stream
-- ARGV[1] expected status ('*' = any non-terminal)   ARGV[2] expected token ('*' = any)
-- ARGV[3] new status   ARGV[4] error reason   ARGV[5] record (json)   ARGV[6] ttl (s)
-- ARGV[7..] optional: a webhook notification's stream fields (name, value, ...), added to the outbox in this
-- same step, so the job's new status and its notification are written together or not at all
-- (no MAXLEN, as Outbox.add: trimming would drop notifications not yet delivered)
-- when the job names an inbox (field 'inbox', a list key), its id is also pushed there (completion feed)
-- returns {1, created_ms, finished_ms} or {0, status}
local status = redis.call('HGET', KEYS[1], 'status')
local token = redis.call('HGET', KEYS[1], 'token')
if not status then return {0, 'missing'} end
local terminal = {succeeded=true, failed=true, escalated=true, expired=true, cancelled=true}
if terminal[status] then return {0, status} end
if ARGV[1] ~= '*' and status ~= ARGV[1] then return {0, status} end
if ARGV[2] ~= '*' and token ~= ARGV[2] then return {0, status} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = redis.call('HGET', KEYS[1], 'id')
if #ARGV > 6 then
  -- the first write: a script is not rolled back, so if this one fails nothing else has been written
  redis.call('XADD', KEYS[13], '*', unpack(ARGV, 7))
end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'error', ARGV[4], 'finished_ms', now)
redis.call('ZREM', KEYS[2], id .. ':' .. token)
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
redis.call('ZREM', KEYS[5], id)
redis.call('ZREM', KEYS[9], id)
redis.call('RPUSH', KEYS[7], ARGV[5])
redis.call('XADD', KEYS[10], 'MAXLEN', '~', 100000, '*', 'kind', ARGV[3], 'job', id, 'record', ARGV[5])
local counted = redis.call('HMGET', KEYS[1], 'tier', 'capability')
redis.call('HINCRBY', KEYS[12], 'finished|' .. (counted[1] or '') .. '|' .. ARGV[3] .. '|' .. (counted[2] or ''), 1)
redis.call('DEL', KEYS[6])
redis.call('LPUSH', KEYS[6], 'done')
if ARGV[3] == 'escalated' then
  redis.call('ZADD', KEYS[8], now, id)
  redis.call('DEL', KEYS[11])
else
  local ttl = tonumber(ARGV[6])
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[7], ttl)
  redis.call('EXPIRE', KEYS[6], ttl)
end
local inbox = redis.call('HGET', KEYS[1], 'inbox')
if inbox then
  redis.call('LPUSH', inbox, id)
  redis.call('EXPIRE', inbox, tonumber(ARGV[6]))
end
return {1, redis.call('HGET', KEYS[1], 'created_ms'), now}
