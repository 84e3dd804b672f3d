-- uses: call_learned
-- complete: the running attempt succeeded; record the result and wake waiters. In the same step, what the call
-- teaches is learned (call_learned: the health update and the rate-limit settle, current or not).
-- KEYS[1] job hash   KEYS[2] leases zset   KEYS[3] attempts list   KEYS[4] notify list
-- KEYS[5] deadlines zset   KEYS[6] audit stream
-- KEYS[7] stats hash (fleet-wide counters: field 'finished|<tier>|succeeded|<capability>')
-- KEYS[8..] call_learned's keys (the health hash, then rl_reconcile's)
-- ARGV[1] token   ARGV[2] output (json)   ARGV[3] result (json)   ARGV[4] attempt record (json)
-- ARGV[5] ttl of the finished job (s)   ARGV[6..] call_learned's arguments
-- when the job names an inbox (field 'inbox', a list key), its id is also pushed there (completion feed)
-- returns {1, created_ms, finished_ms, health, settled} or {0, status, health, settled} when the attempt is no
--   longer current (health, settled: call_learned's answers)
-- The notify list is not cleared first: it is empty while a job runs (every transition back from a terminal
-- status, dispatch of an escalated job, deletes it).
local t = redis.call('TIME')
local now_f = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
-- learned first: a fragment that fails (a bad argument) leaves the job as it was, and the worker records a crash
local health, settled = call_learned(KEYS, ARGV, 8, 6, now_f)
local f = redis.call('HMGET', KEYS[1], 'status', 'token', 'id', 'tier', 'capability', 'inbox', 'created_ms')
local status, token, id, inbox = f[1], f[2], f[3], f[6]
if status ~= 'running' or token ~= ARGV[1] then
  return {0, status or 'missing', health, settled}
end
local now = math.floor(now_f)
redis.call('HSET', KEYS[1], 'status', 'succeeded', 'output', ARGV[2], 'result', ARGV[3],
           'finished_ms', now, 'outcome', 'ok')
redis.call('ZREM', KEYS[2], id .. ':' .. token)
redis.call('ZREM', KEYS[5], id)
redis.call('RPUSH', KEYS[3], ARGV[4])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', 100000, '*', 'kind', 'completed', 'job', id, 'token', ARGV[1])
redis.call('HINCRBY', KEYS[7], 'finished|' .. (f[4] or '') .. '|succeeded|' .. (f[5] or ''), 1)
redis.call('LPUSH', KEYS[4], 'done')
local ttl = tonumber(ARGV[5])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('EXPIRE', KEYS[4], ttl)
if inbox then
  redis.call('LPUSH', inbox, id)
  redis.call('EXPIRE', inbox, ttl)
end
return {1, f[7], now, health, settled}
