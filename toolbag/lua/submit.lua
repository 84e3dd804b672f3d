-- submit: create a job and enqueue its first attempt, atomically; honour the idempotency key.
-- KEYS[1] job hash          KEYS[2] idempotency key (or the dummy key when none)
-- KEYS[3] queue list        KEYS[4] waiting zset of that queue      KEYS[5] deadlines zset
-- KEYS[6] stats hash (fleet-wide counters: field 'submitted|<tier>|<capability>')   KEYS[7] history list
-- ARGV[1] job id   ARGV[2] use idempotency (1/0)   ARGV[3] idempotency ttl (s)   ARGV[4] envelope
-- ARGV[5] deadline, relative (ms)   ARGV[6..] field, value pairs for the job hash (the field '_history' is
-- the history's first entry instead: why the route chose the first model)
-- returns {1, id} when created, {0, existing id} when the idempotency key already names a job; an error,
-- before anything is written, when the ttl or the deadline is not a number Redis can keep
local ttl = tonumber(ARGV[3])
local deadline_in = tonumber(ARGV[5])
if not ttl or ttl ~= math.floor(ttl) or ttl < 1 or ttl > 9e12 then
  return redis.error_reply('submit: the ttl must be a whole number of seconds from 1 to 9e12, got ' .. ARGV[3])
end
if not deadline_in or deadline_in ~= math.floor(deadline_in) or deadline_in < 1 or deadline_in > 9e15 then
  return redis.error_reply('submit: the deadline must be a whole number of ms from 1 to 9e15, got ' .. ARGV[5])
end
if ARGV[2] == '1' then
  local existing = redis.call('GET', KEYS[2])
  if existing then return {0, existing} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + deadline_in
local fields = {'id', ARGV[1], 'status', 'queued', 'token', '1', 'attempt', '1',
                'created_ms', now, 'enqueued_ms', now, 'deadline_ms', deadline}
local given = {}
for i = 6, #ARGV, 2 do
  if ARGV[i] == '_history' then
    redis.call('RPUSH', KEYS[7], ARGV[i + 1])
  else
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
    given[ARGV[i]] = ARGV[i + 1]
  end
end
redis.call('HSET', KEYS[1], unpack(fields))
if ARGV[2] == '1' then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ttl)
end
redis.call('LPUSH', KEYS[3], ARGV[4])
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('ZADD', KEYS[5], deadline, ARGV[1])
redis.call('HINCRBY', KEYS[6], 'submitted|' .. (given['tier'] or '') .. '|' .. (given['capability'] or ''), 1)
return {1, ARGV[1]}
