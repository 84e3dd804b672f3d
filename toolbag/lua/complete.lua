-- uses: rl_reconcile health_learn
-- complete: the running attempt succeeded; record the result and wake waiters. In the same step, the call's
-- rate-limit ticket is settled (rl_reconcile) and the model's health learns the answer (health_learn).
-- KEYS[1] job hash   KEYS[2] leases zset   KEYS[3] attempts list   KEYS[4] notify list
-- KEYS[5] deadlines zset   KEYS[6] audit stream
-- KEYS[7] stats hash (fleet-wide counters: field 'finished|<tier>|succeeded|<capability>')
-- KEYS[8] health hash of the model (read only with health arguments)   KEYS[9..] rl_reconcile's keys
-- ARGV[1] token   ARGV[2] output (json)   ARGV[3] result (json)   ARGV[4] attempt record (json)
-- ARGV[5] ttl of the finished job (s)   ARGV[6] how many of the arguments after it are health_learn's (0 or 8)
-- ARGV[7..] health_learn's arguments, then rl_reconcile's (none: no ticket to settle)
-- when the job names an inbox (field 'inbox', a list key), its id is also pushed there (completion feed)
-- returns {1, created_ms, finished_ms, health, settled} or {0, status, health, settled} when the attempt is no
--   longer current; health: the circuit state after learning ('' without), settled: rl_reconcile's reply ({}
--   without). The settle and the health update run either way: they describe the vendor call, which was made
--   and answered whether or not the job still wanted it (a late completion releases its in-flight slot, gives
--   back the tokens it did not use, and tells health the model answered), exactly as when they were separate.
-- The notify list is not cleared first: it is empty while a job runs (every transition back from a terminal
-- status, dispatch of an escalated job, deletes it).
local now_f
local function clock()
  if not now_f then
    local t = redis.call('TIME')
    now_f = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
  end
  return now_f
end
local n_health = tonumber(ARGV[6])
local function learn()
  local health, settled = '', {}
  if n_health > 0 then
    health = health_learn({KEYS[8]}, {unpack(ARGV, 7, 6 + n_health)}, math.floor(clock()))
  end
  if #ARGV > 6 + n_health then
    settled = rl_reconcile({unpack(KEYS, 9)}, {unpack(ARGV, 7 + n_health)}, clock())
  end
  return health, settled
end
-- learned first: a fragment that fails (a bad argument) leaves the job as it was, and the worker records a crash
local health, settled = learn()
local f = redis.call('HMGET', KEYS[1], 'status', 'token', 'id', 'tier', 'capability', 'inbox', 'created_ms')
local status, token, id, inbox = f[1], f[2], f[3], f[6]
if status ~= 'running' or token ~= ARGV[1] then
  return {0, status or 'missing', health, settled}
end
local now = math.floor(clock())
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
