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
local function log_num(v) return string.format('%.17g', v) end

-- tok key -> its '~sum' as log_wait read it in this script call, for log_add to write back with the new call
-- (one HSET for the call's tokens and the total)
local log_sums = {}
-- log key -> how many calls it held when log_wait counted them in this script call (only with an rpm)
local log_cards = {}

-- drop the calls that left the span (now - span and older) and return the tickets of the calls still in the
-- span but out of the token window (the edge: (now - span, now - window)), both from one read of the log
local function log_scan(log, tok, span, window, now)
  local cutoff = log_fmt(now - span)
  local cut = tonumber(cutoff)
  local upper = '(' .. log_fmt(now - window)
  while true do
    local rows = redis.call('ZRANGEBYSCORE', log, '-inf', upper, 'WITHSCORES', 'LIMIT', 0, 500)
    local old, edge = {}, {}
    for j = 1, #rows, 2 do
      if tonumber(rows[j + 1]) <= cut then old[#old + 1] = rows[j] else edge[#edge + 1] = rows[j] end
    end
    if #old > 0 then
      local amounts = redis.call('HMGET', tok, unpack(old))
      local gone = 0
      for _, v in ipairs(amounts) do gone = gone + (tonumber(v) or 0) end
      redis.call('HDEL', tok, unpack(old))
      redis.call('ZREM', log, unpack(old))
      if gone ~= 0 then redis.call('HINCRBYFLOAT', tok, '~sum', -gone) end
    end
    if #rows < 1000 then return edge end  -- that was all of them
    if #edge > 0 then  -- a full page that reached the edge: the edge may go on past it
      return redis.call('ZRANGEBYSCORE', log, '(' .. cutoff, upper)
    end
  end
end

-- ms until a call reserving ``cost`` tokens, ``output`` of them its output cap, may start (0: now)
local function log_wait(log, tok, span, window, rpm, tpm, cost, output, now)
  local edge = log_scan(log, tok, span, window, now)
  local wait = 0
  local card = rpm > 0 and redis.call('ZCARD', log) or nil
  log_cards[log] = card
  if card and card >= rpm then
    local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
    wait = tonumber(oldest[2]) + span - now
  end
  if tpm > 0 then
    local sum = tonumber(redis.call('HGET', tok, '~sum') or '0') or 0
    log_sums[tok] = sum
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

-- record a call (its caller sets the keys' times to live: at least 2 spans from now)
local function log_add(log, tok, ticket, cost, tpm, now)
  redis.call('ZADD', log, log_fmt(now), ticket)
  if tpm > 0 then
    local sum = log_sums[tok] or tonumber(redis.call('HGET', tok, '~sum') or '0') or 0
    log_sums[tok] = sum + cost
    redis.call('HSET', tok, ticket, cost, '~sum', log_num(sum + cost))
  end
end

-- make `key` live at least `ms` from now, never shortening the expiry it has
local function log_keep(key, ms)
  local left = redis.call('PTTL', key)
  if left >= 0 and left >= ms then return end
  redis.call('PEXPIRE', key, ms)
end
