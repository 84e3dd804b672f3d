-- health_choose: the first candidate that may take a job now; grants the single half-open probe.
-- KEYS[1..n] health hashes of the candidates, in preference order
-- ARGV[1] probe lease (ms)
-- returns the 1-based index of the chosen candidate, or 0 when none may take work now
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, h in ipairs(KEYS) do
  local f = redis.call('HMGET', h, 'state', 'open_until_ms', 'probe_until_ms', 'cooldown_until_ms')
  local state = f[1] or 'closed'
  local cooling = tonumber(f[4] or '0') > now
  if not cooling then
    if state == 'closed' then return i end
    local open_until = tonumber(f[2] or '0')
    local probe_until = tonumber(f[3] or '0')
    if (state == 'open' and now >= open_until) or (state == 'half_open' and now >= probe_until) then
      redis.call('HSET', h, 'state', 'half_open', 'probe_until_ms', now + tonumber(ARGV[1]), 'changed_ms', now)
      return i
    end
  end
end
return 0
