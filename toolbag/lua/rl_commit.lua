-- uses: rl_log
-- rl_commit: a worker woke for its booked slot; record the call in each scope's call log (rl_log), unless
-- that would put more than rpm calls, or more than tpm tokens, in the last (window + margin) (another
-- worker's late call, or calls in flight holding their reservation): then say how long to wait.
-- KEYS, 2 per scope with an rpm or a tpm: its call log zset, its token hash
-- ARGV[1] ticket id   ARGV[2] tokens the call reserves   ARGV[3] of them, its output cap
-- ARGV[4..] 4 per scope: span (window + margin, ms), window (ms), rpm, tpm (0 = no limit of that kind)
-- returns {1, now_ms} when committed, {0, wait_ms} when not
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ticket, cost, output = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = #KEYS / 2
local wait = 0
for i = 1, n do
  local a = 3 + (i - 1) * 4
  wait = math.max(wait, log_wait(KEYS[2 * i - 1], KEYS[2 * i], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]),
                                 tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), cost, output, now))
end
if wait > 0 then return {0, log_fmt(wait)} end
for i = 1, n do
  local a = 3 + (i - 1) * 4
  local span, tpm = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 4])
  log_add(KEYS[2 * i - 1], KEYS[2 * i], ticket, cost, tpm, now)
  -- the admission that booked this slot recorded the keys' expiries in the state: never shorten them
  log_keep(KEYS[2 * i - 1], math.ceil(2 * span))
  if tpm > 0 then log_keep(KEYS[2 * i], math.ceil(2 * span)) end
end
return {1, log_fmt(now)}
