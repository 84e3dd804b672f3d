-- health_record: learn from one attempt's outcome (circuit breaker, cooldown, EWMAs).
-- KEYS[1] health hash of the model
-- ARGV[1] outcome   ARGV[2] latency (s)   ARGV[3] retry-after (s, '' if none)
-- ARGV[4] failures to open   ARGV[5] base open time (s)   ARGV[6] max open time (s)
-- ARGV[7] long open time for auth/quota (s)   ARGV[8] EWMA weight of the newest sample
-- hash fields: state (closed|open|half_open), open_until_ms, probe_until_ms, failures, opens,
--              cooldown_until_ms, ewma_latency_s, ewma_refusal, changed_ms
-- returns the state after the update
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = KEYS[1]
local outcome = ARGV[1]
local alpha = tonumber(ARGV[8])
local state = redis.call('HGET', h, 'state') or 'closed'
local failures = tonumber(redis.call('HGET', h, 'failures') or '0')
local opens = tonumber(redis.call('HGET', h, 'opens') or '0')
local refusal = tonumber(redis.call('HGET', h, 'ewma_refusal') or '0')

if outcome == 'lost' then
  return state  -- our worker died: that says nothing about the model
end

local function open_for(seconds)
  redis.call('HSET', h, 'state', 'open', 'open_until_ms', now + math.floor(seconds * 1000),
             'probe_until_ms', 0, 'failures', 0, 'opens', opens + 1, 'changed_ms', now)
  return 'open'
end

if outcome == 'refused' then
  redis.call('HSET', h, 'ewma_refusal', alpha + (1 - alpha) * refusal)
else
  redis.call('HSET', h, 'ewma_refusal', (1 - alpha) * refusal)
end

if outcome == 'ok' or outcome == 'refused' or outcome == 'invalid_output' then
  if outcome == 'ok' then
    local lat = tonumber(redis.call('HGET', h, 'ewma_latency_s') or ARGV[2])
    redis.call('HSET', h, 'ewma_latency_s', alpha * tonumber(ARGV[2]) + (1 - alpha) * lat)
  end
  if state ~= 'closed' then
    -- a successful probe closes the circuit; a model that stays closed forgives past opens slowly
    redis.call('HSET', h, 'state', 'closed', 'failures', 0, 'probe_until_ms', 0, 'changed_ms', now)
  else
    redis.call('HSET', h, 'failures', 0)
    local changed = tonumber(redis.call('HGET', h, 'changed_ms') or now)
    if opens > 0 and now - changed > 300000 then
      redis.call('HSET', h, 'opens', opens - 1, 'changed_ms', now)
    end
  end
  return 'closed'
end

if outcome == 'rate_limited' then
  local wait = tonumber(ARGV[3] ~= '' and ARGV[3] or '1')
  local current = tonumber(redis.call('HGET', h, 'cooldown_until_ms') or '0')
  redis.call('HSET', h, 'cooldown_until_ms', math.max(current, now + math.floor(wait * 1000)))
  return state
end

if outcome == 'auth' or outcome == 'quota_exhausted' then
  return open_for(tonumber(ARGV[7]))
end

if outcome == 'overloaded' or outcome == 'server_error' or outcome == 'network' or outcome == 'timeout' then
  local backoff = math.min(tonumber(ARGV[6]), tonumber(ARGV[5]) * math.pow(2, math.min(opens, 10)))
  if state == 'half_open' then
    return open_for(backoff)  -- the probe failed: open again, for longer (a flapping model is not hammered)
  end
  failures = failures + 1
  if failures >= tonumber(ARGV[4]) then
    return open_for(backoff)
  end
  redis.call('HSET', h, 'failures', failures)
  return state
end
return state
