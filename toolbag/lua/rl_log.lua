-- rl_log: the call log of one limit scope, prepended to rl_acquire and rl_commit (functions only).
-- The log is the hard stop behind the GCRA frontiers, checked when a call really starts:
--   log  zset  ticket -> when the call started (ms, Redis clock)
--   tok  hash  ticket -> tokens the call counts: its reservation while in flight, what it used once
--              settled (rl_settle); field '~sum' holds their total over the calls in the log
-- A call starts only while fewer than rpm calls started within the last span (window + margin), and the
-- tokens of the calls within the last window plus its own input fit in tpm (the margin, which absorbs the
-- jitter between a call's start and its arrival, is left to the one call's output a window may exceed by). In-flight calls count at their reservation (input
-- estimate plus output cap), so however late a worker wakes for its slot, a window exceeds tpm by at most
-- the output of the one call that started last (unless a call used more than it reserved).
local function log_fmt(v) return string.format('%.3f', v) end

local function log_prune(log, tok, span, now)
  local cutoff = log_fmt(now - span)
  while true do
    local old = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff, 'LIMIT', 0, 500)
    if #old == 0 then return end
    local amounts = redis.call('HMGET', tok, unpack(old))
    local gone = 0
    for _, v in ipairs(amounts) do gone = gone + (tonumber(v) or 0) end
    redis.call('HDEL', tok, unpack(old))
    redis.call('ZREM', log, unpack(old))
    if gone ~= 0 then redis.call('HINCRBYFLOAT', tok, '~sum', -gone) end
    if #old < 500 then return end  -- that was the last of them: no need to ask again
  end
end

-- ms until a call reserving ``cost`` tokens, ``output`` of them its output cap, may start (0: now)
local function log_wait(log, tok, span, window, rpm, tpm, cost, output, now)
  log_prune(log, tok, span, now)
  local wait = 0
  if rpm > 0 and redis.call('ZCARD', log) >= rpm then
    local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
    wait = tonumber(oldest[2]) + span - now
  end
  if tpm > 0 then
    local sum = tonumber(redis.call('HGET', tok, '~sum') or '0') or 0
    local edge = redis.call('ZRANGEBYSCORE', log, log_fmt(now - span), '(' .. log_fmt(now - window))
    if #edge > 0 then  -- in the log for the request count, out of the token window already
      for _, v in ipairs(redis.call('HMGET', tok, unpack(edge))) do sum = sum - (tonumber(v) or 0) end
    end
    local input = math.max(0, cost - output)
    if sum > 0.5 and sum + input > tpm then
      -- until enough of the oldest calls leave the window (a settle that gives tokens back may come sooner)
      local need = sum + input - tpm
      local entries = redis.call('ZRANGEBYSCORE', log, log_fmt(now - window), '+inf', 'WITHSCORES', 'LIMIT', 0, 500)
      local freed, at = 0, now
      for j = 1, #entries, 2 do
        freed = freed + (tonumber(redis.call('HGET', tok, entries[j])) or 0)
        at = tonumber(entries[j + 1])
        if freed >= need then break end
      end
      wait = math.max(wait, at + window - now, 1)
    end
  end
  return wait
end

local function log_add(log, tok, ticket, cost, span, tpm, now)
  redis.call('ZADD', log, log_fmt(now), ticket)
  redis.call('PEXPIRE', log, math.ceil(2 * span))
  if tpm > 0 then
    redis.call('HSET', tok, ticket, cost)
    redis.call('HINCRBYFLOAT', tok, '~sum', cost)
    redis.call('PEXPIRE', tok, math.ceil(2 * span))
  end
end
