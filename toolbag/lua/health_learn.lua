-- health_learn (a fragment: functions only): learn from one attempt's outcome (circuit breaker, cooldown, EWMAs).
-- KEYS[1] health hash of the model
-- ARGV[1] outcome   ARGV[2] latency (s)   ARGV[3] retry-after (s, '' if none)
-- ARGV[4] failures to open   ARGV[5] base open time (s)   ARGV[6] max open time (s)
-- ARGV[7] long open time for auth/quota (s)   ARGV[8] EWMA weight of the newest sample
-- hash fields: state (closed|open|half_open), open_until_ms, probe_until_ms, failures, opens (times opened),
--              doublings (of the next open time), closed_ms (when the circuit last closed),
--              cooldown_until_ms, ewma_latency_s, ewma_refusal, changed_ms
-- The next open time is the base time doubled `doublings` times, at most the max time. A failed probe adds a
-- doubling (no more than reach the max); every base open time of healthy time since the circuit closed takes
-- one away. The time is Redis's, so a model that recovered long ago (or a fleet restarted on an old Redis) is
-- not punished for an outage long past.
-- returns the state after the update
-- health_learn(KEYS, ARGV, now): KEYS and ARGV as above (a script passes its own, or a slice of them), now in
-- whole ms on the Redis clock
local function health_learn(KEYS, ARGV, now)
  local h = KEYS[1]
  local outcome = ARGV[1]
  local alpha = tonumber(ARGV[8])
  local base_ms = tonumber(ARGV[5]) * 1000
  local max_ms = tonumber(ARGV[6]) * 1000
  local f = redis.call('HMGET', h, 'state', 'failures', 'opens', 'doublings', 'closed_ms', 'open_until_ms',
                       'ewma_refusal', 'ewma_latency_s')
  local state = f[1] or 'closed'
  local failures = tonumber(f[2] or '0')
  local opens = tonumber(f[3] or '0')
  local doublings = tonumber(f[4] or '0')
  local closed_ms = tonumber(f[5] or '0')
  local open_until = tonumber(f[6] or '0')
  local refusal = tonumber(f[7] or '0')

  if outcome == 'lost' then
    return state  -- our worker died: that says nothing about the model
  end

  local max_doublings = 0
  while base_ms * 2 ^ max_doublings < max_ms and max_doublings < 40 do
    max_doublings = max_doublings + 1
  end

  local function open_for(ms, next_doublings)
    redis.call('HSET', h, 'state', 'open', 'open_until_ms', now + math.floor(ms), 'probe_until_ms', 0,
               'failures', 0, 'opens', opens + 1, 'doublings', next_doublings, 'changed_ms', now)
    return 'open'
  end

  local function reopen(held)
    -- open for the base time doubled `held` times, and hold one more doubling for the next time
    return open_for(math.min(max_ms, base_ms * 2 ^ held), math.min(held + 1, max_doublings))
  end

  -- the EWMAs, and the reset of an answered model's state, go out in one HSET
  local learned = {'ewma_refusal', outcome == 'refused' and alpha + (1 - alpha) * refusal or (1 - alpha) * refusal}

  if outcome == 'ok' or outcome == 'refused' or outcome == 'invalid_output' then
    if outcome == 'ok' then
      local lat = tonumber(f[8] or ARGV[2])
      learned[#learned + 1] = 'ewma_latency_s'
      learned[#learned + 1] = alpha * tonumber(ARGV[2]) + (1 - alpha) * lat
    end
    if state ~= 'closed' then
      -- the model answered (a successful probe): closed at once; healthy since its open time ended
      for _, v in ipairs({'state', 'closed', 'failures', 0, 'probe_until_ms', 0, 'changed_ms', now,
                          'closed_ms', math.min(now, open_until)}) do
        learned[#learned + 1] = v
      end
    elseif failures > 0 then
      learned[#learned + 1] = 'failures'
      learned[#learned + 1] = 0
    end
    redis.call('HSET', h, unpack(learned))
    return 'closed'
  end
  redis.call('HSET', h, unpack(learned))

  if outcome == 'rate_limited' then
    local wait = tonumber(ARGV[3] ~= '' and ARGV[3] or '1')
    local current = tonumber(redis.call('HGET', h, 'cooldown_until_ms') or '0')
    redis.call('HSET', h, 'cooldown_until_ms', math.max(current, now + math.floor(wait * 1000)))
  end

  if outcome == 'auth' or outcome == 'quota_exhausted' then
    return open_for(tonumber(ARGV[7]) * 1000, doublings)
  end

  if outcome == 'overloaded' or outcome == 'server_error' or outcome == 'network' or outcome == 'timeout' then
    if state == 'half_open' or (state == 'open' and now >= open_until) then
      return reopen(doublings)  -- the probe failed: open again, for longer (a flapping model is not hammered)
    end
    if state == 'open' then
      return state  -- a call made before the circuit opened: the outage is already counted
    end
    failures = failures + 1
    if failures >= tonumber(ARGV[4]) then
      return reopen(math.max(0, doublings - math.floor((now - closed_ms) / base_ms)))
    end
    redis.call('HSET', h, 'failures', failures)
    return state
  end

  if state == 'half_open' then
    -- the probe got an answer that says nothing of the model's health (rate limited, a request it rejected):
    -- the next job may probe at once instead of waiting out the probe's lease
    redis.call('HSET', h, 'probe_until_ms', 0)
  end
  return state
end
