-- dispatch: send a job to its next attempt, now or later: the supervisor after a decision (from
-- 'deciding'), or a human retrying an escalated job (from 'escalated').
-- KEYS[1] job hash   KEYS[2] set the job leaves (deciding or escalations zset)   KEYS[3] attempts list
-- KEYS[4] target queue list (now) or the delayed zset (later)   KEYS[5] waiting zset of the target queue
-- KEYS[6] audit stream   KEYS[7] deadlines zset   KEYS[8] notify list   KEYS[9] resolved list
-- ARGV[1] expected token   ARGV[2] new token   ARGV[3] model   ARGV[4] provider   ARGV[5] queue name
-- ARGV[6] envelope (when now)   ARGV[7] decision record (json)   ARGV[8] delay (ms; 0 = now)
-- ARGV[9] feedback for the next attempt ('' for none)   ARGV[10] expected status
-- ARGV[11] new deadline, relative (ms; 0 = keep)   ARGV[12] the cut answer the next attempt continues ('' for none)
-- returns {1} or {0, status}
local status = redis.call('HGET', KEYS[1], 'status')
local token = redis.call('HGET', KEYS[1], 'token')
if status ~= ARGV[10] or token ~= ARGV[1] then
  return {0, status or 'missing'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = redis.call('HGET', KEYS[1], 'id')
local delay = tonumber(ARGV[8])
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'model', ARGV[3], 'provider', ARGV[4], 'queue', ARGV[5],
           'feedback', ARGV[9], 'prefill', ARGV[12] or '')
redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('ZREM', KEYS[2], id)
redis.call('RPUSH', KEYS[3], ARGV[7])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', 100000, '*', 'kind', 'decision', 'job', id, 'record', ARGV[7])
if ARGV[10] == 'escalated' then
  -- back in the fleet: the escalation's wake-up token is stale; wake those waiting through it
  redis.call('DEL', KEYS[8])
  redis.call('LPUSH', KEYS[9], 'done')
  redis.call('EXPIRE', KEYS[9], 60)
end
if tonumber(ARGV[11]) > 0 then
  local deadline = now + tonumber(ARGV[11])
  redis.call('HSET', KEYS[1], 'deadline_ms', deadline)
  redis.call('ZADD', KEYS[7], deadline, id)
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[3])
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
