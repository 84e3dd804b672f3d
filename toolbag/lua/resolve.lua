-- resolve: a human settles an escalated job (an output given, or rejected) and wakes every waiter.
-- KEYS[1] job hash   KEYS[2] escalations zset   KEYS[3] attempts list   KEYS[4] notify list
-- KEYS[5] resolved list (waiters holding on through escalation)   KEYS[6] audit stream
-- ARGV[1] new status (succeeded|failed)   ARGV[2] output (json, or '')   ARGV[3] result (json, or '')
-- ARGV[4] error ('' for none)   ARGV[5] record (json)   ARGV[6] ttl (s)
-- returns {1} or {0, status}
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'escalated' then return {0, status or 'missing'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_ms', now, 'error', ARGV[4])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'output', ARGV[2], 'result', ARGV[3]) end
redis.call('ZREM', KEYS[2], id)
redis.call('RPUSH', KEYS[3], ARGV[5])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', 100000, '*', 'kind', 'resolution', 'job', id, 'record', ARGV[5])
redis.call('DEL', KEYS[4])
redis.call('LPUSH', KEYS[4], 'done')
redis.call('LPUSH', KEYS[5], 'done')
local ttl = tonumber(ARGV[6])
for i = 1, 5 do
  if i ~= 2 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return {1}
