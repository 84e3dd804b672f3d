-- budget_reserve: hold a job's estimated cost against every budget it counts in, or refuse, atomically.
-- KEYS[1] pending zset (job id -> when to look at its reservation again)   KEYS[2] the job's budget hash
-- KEYS[3..] one hash per budget scope and period (fields: spent, reserved; nano-USD)
-- ARGV[1] job id   ARGV[2] amount (nano-USD)   ARGV[3] job hash key   ARGV[4] budget-job key prefix
-- ARGV[5] the longest a reservation is held (ms)
-- ARGV[6..] per scope hash: hard limit (nano-USD, 0: none), ttl (s)
-- returns {1} reserved, or {0, i, spent, reserved} when scope i (1-based) is at its hard limit.
--
-- A job is admitted while a scope's spent + reserved is below the limit, so however many producers race,
-- a scope ends over its limit by at most one job's reservation (when actual costs stay within estimates).
-- Reservations of jobs that ended without settling (failed, cancelled, expired, never written) are given
-- back here, a few at a time, by looking at the job they belong to (its key is kept in its budget hash).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local terminal = {succeeded = true, failed = true, escalated = true, cancelled = true, expired = true}

local function release(bkey)
  local f = redis.call('HMGET', bkey, 'left', 'keys')
  local left = tonumber(f[1] or '0') or 0
  if left > 0 and f[2] then
    for k in string.gmatch(f[2], '%S+') do
      redis.call('HINCRBY', k, 'reserved', -left)
    end
  end
  redis.call('HSET', bkey, 'left', 0)
end

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 20)
for _, id in ipairs(due) do
  local bkey = ARGV[4] .. id
  local f = redis.call('HMGET', bkey, 'job', 'until')
  local status = f[1] and redis.call('HGET', f[1], 'status') or false
  if (not status) or terminal[status] or now >= tonumber(f[2] or '0') then
    release(bkey)
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('ZADD', KEYS[1], now + 5000, id)
  end
end

local amount = tonumber(ARGV[2])
local n = #KEYS - 2
for i = 1, n do
  local limit = tonumber(ARGV[4 + 2 * i])
  if limit > 0 then
    local f = redis.call('HMGET', KEYS[2 + i], 'spent', 'reserved')
    local spent, reserved = tonumber(f[1] or '0') or 0, tonumber(f[2] or '0') or 0
    if spent + reserved >= limit then
      return {0, i, tostring(spent), tostring(reserved)}
    end
  end
end
local names = {}
for i = 1, n do
  local k = KEYS[2 + i]
  redis.call('HINCRBY', k, 'reserved', amount)
  local ttl = tonumber(ARGV[5 + 2 * i])
  if redis.call('TTL', k) < 0 then redis.call('EXPIRE', k, ttl) end
  names[#names + 1] = k
end
local hold = tonumber(ARGV[5])
redis.call('HSET', KEYS[2], 'left', amount, 'keys', table.concat(names, ' '), 'job', ARGV[3], 'until', now + hold)
redis.call('PEXPIRE', KEYS[2], hold + 86400000)
redis.call('ZADD', KEYS[1], now + 5000, ARGV[1])
return {1}
