-- rl_commit: a worker woke for its booked slot; record the call in each scope's call log, unless that
-- would put more than rpm calls in the last (window + margin) (a late wake-up of another worker): then
-- say how long until the oldest call leaves the window.
-- KEYS, 1 per scope with an rpm: its call log zset
-- ARGV[1] ticket id   ARGV[2..] 2 per key: span (window + margin, ms), rpm
-- returns {1, now_ms} when committed, {0, wait_ms} when not
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local function fmt(v) return string.format('%.3f', v) end
local wait = 0
for i = 1, #KEYS do
  local span, rpm = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', fmt(now - span))
  if redis.call('ZCARD', KEYS[i]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + span - now)
  end
end
if wait > 0 then return {0, fmt(wait)} end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], fmt(now), ARGV[1])
  redis.call('PEXPIRE', KEYS[i], math.ceil(2 * tonumber(ARGV[2 * i])))
end
return {1, fmt(now)}
