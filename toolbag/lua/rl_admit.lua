-- uses: rl_log
-- rl_admit (a fragment: functions only): admit one attempt against every limit scope that applies to it (the
-- model, and optionally the provider account and the caller), all or nothing; or say how long until it could be admitted.
-- A refusal takes no capacity.
--
-- Each scope paces requests (over window + margin) and tokens (over the window: the call log's token check
-- is the hard stop for them) with GCRA frontiers (the time from which the next unit is free),
-- one pair per lane: lane 'i' holds the interactive reserve, lane 'b' the rest. A request uses its own
-- lane; it may borrow the other lane's next slot when that comes sooner (interactive always may;
-- standard and batch only while no interactive job asked within the last window, and at most one
-- interval ahead; once interactive asks, batch stays in its lane and interactive has its share).
-- Every admitted request is
-- charged to exactly one lane, and the lanes' shares add up to the limit, so no window of
-- (window + margin) ever holds more than the limit. A slot may lie in the future (up to the horizon):
-- the caller sleeps until it; the frontier moves on at once, so slots are never handed out twice.
--
-- KEYS, 5 per scope in order: state hash, in-flight zset (interactive), in-flight zset (others), call log,
-- token hash of the call log (rl_log)
-- ARGV[1] mode: 'take' (admit and charge) or 'check' (writes nothing)
-- ARGV[2] class: 'i' (interactive) or 'b' (standard, batch)
-- ARGV[3] horizon (ms): the latest slot, from now, the caller accepts
-- ARGV[4] ticket id   ARGV[5] hold (ms): lifetime of an in-flight entry never released (dead worker)
-- ARGV[6] cost: tokens to reserve   ARGV[7] number of scopes
-- ARGV[8] tokens the call is expected to use, before any were measured (paces the token frontiers and
--         the hand-back line until calls were measured; the call log holds the whole reservation)
-- ARGV[9] of the tokens reserved, the output cap (the call log lets a window exceed tpm by one call's output)
-- ARGV[10..] 6 per scope: window (ms), margin (ms), rpm, tpm, concurrency, interactive reserve (0..1)
--           (rpm, tpm, concurrency: 0 = no limit of that kind)
-- state hash fields (ms unless said): ri rb ti tb lane frontiers; ia last interactive ask; cd cooldown
--   until; gr/gri/gru and gt/gti/gtu learned frontier, interval (per request / per token), until;
--   qi qb end of the hand-back line per class; ws cr ct pr pt usage of the current and previous window;
--   ta average tokens a call really used (rl_settle); xs xi xb xl xt the expiry set on the state, the
--   in-flight sets, the call log and its tokens (absolute, see expiry below)
-- The call log (rl_log: call times and their tokens, per scope with an rpm or a tpm) is the hard stop
-- behind the frontiers: a call is committed only while fewer than rpm calls, and at most tpm tokens, were
-- committed in the last (window + margin), so a worker that wakes late for its slot cannot crowd a window.
-- A slot due now is committed here at once; a later one is committed by rl_commit when the worker wakes.
-- returns {1, wait_ms, lanes, committed, now_ms, charged} when admitted: call at now + wait_ms
--         (after rl_commit unless committed is 1); lanes has one letter per scope (the lane charged);
--         charged: the tokens each token frontier moved on by, per scope, comma-separated (rl_settle
--         reconciles them with what the call used)
--         {0, wait_ms, why, scope} when refused: why 'rate' (wait_ms = when to come back) or
--         'concurrency' (wait_ms = -1: unknown, poll)
-- rl_admit(KEYS, ARGV, now): KEYS and ARGV as above (a script passes its own, or a slice of them), now in ms
-- (fractional) on the Redis clock: the caller reads TIME once for its whole script
local function rl_admit(KEYS, ARGV, now)
  local mode, class = ARGV[1], ARGV[2]
  local horizon = tonumber(ARGV[3])
  local ticket = ARGV[4]
  local hold = tonumber(ARGV[5])
  local cost = tonumber(ARGV[6])
  local n = tonumber(ARGV[7])
  local expected = tonumber(ARGV[8])
  local output = tonumber(ARGV[9])
  local FIELDS = {'ri', 'rb', 'ti', 'tb', 'ia', 'cd', 'gr', 'gri', 'gru', 'gt', 'gti', 'gtu', 'qi', 'qb',
                  'ws', 'cr', 'ct', 'pr', 'pt', 'ta', 'xs', 'xi', 'xb', 'xl', 'xt'}

  local function num(v) return tonumber(v) or 0 end
  local function fmt(v) return string.format('%.3f', v) end

  local function split_requests(rpm, reserve)
    if rpm <= 0 then return 0, 0 end
    if reserve <= 0 or rpm < 2 then return 0, rpm end
    local ri = math.floor(rpm * reserve + 0.5)
    if ri < 1 then ri = 1 end
    if ri > rpm - 1 then ri = rpm - 1 end
    return ri, rpm - ri
  end

  local function split_tokens(tpm, reserve)
    if tpm <= 0 then return 0, 0 end
    if reserve <= 0 then return 0, tpm end
    return tpm * reserve, tpm * (1 - reserve)
  end

  -- the frontier field and the time one unit costs, for a resource ('r' or 't') in a lane ('i' or 'b')
  local function lane(kind, ln, share_i, share_b, span)
    if ln == 'i' and share_i > 0 then return kind .. 'i', span / share_i end
    return kind .. 'b', span / share_b
  end

  local function frontier(sc, ln)
    local f = 0
    if sc.rb > 0 then f = math.max(f, num(sc.h[lane('r', ln, sc.ri, sc.rb, sc.span)])) end
    if sc.tb > 0 then f = math.max(f, num(sc.h[lane('t', ln, sc.ti, sc.tb, sc.span)])) end
    return f
  end

  -- one interval of a lane: how far ahead a borrower may book it
  local function lookahead(sc, ln)
    local l = 0
    if sc.rb > 0 then
      local _, iv = lane('r', ln, sc.ri, sc.rb, sc.span)
      l = iv
    end
    if sc.tb > 0 then
      local _, iv = lane('t', ln, sc.ti, sc.tb, sc.window)
      l = math.max(l, sc.charge * iv)
    end
    return l
  end

  local scopes = {}
  local slot = now
  local binding = 1
  local blocked = 0
  for i = 1, n do
    local a = 9 + (i - 1) * 6
    local sc = {
      state = KEYS[(i - 1) * 5 + 1], cci = KEYS[(i - 1) * 5 + 2], ccb = KEYS[(i - 1) * 5 + 3],
      log = KEYS[(i - 1) * 5 + 4], tok = KEYS[(i - 1) * 5 + 5],
      window = tonumber(ARGV[a + 1]), margin = tonumber(ARGV[a + 2]), rpm = tonumber(ARGV[a + 3]),
      tpm = tonumber(ARGV[a + 4]), conc = tonumber(ARGV[a + 5]), reserve = tonumber(ARGV[a + 6]),
      h = {},
    }
    sc.span = sc.window + sc.margin
    sc.ri, sc.rb = split_requests(sc.rpm, sc.reserve)
    sc.charge = cost
    sc.ti, sc.tb = split_tokens(sc.tpm, sc.reserve)
    local vals = redis.call('HMGET', sc.state, unpack(FIELDS))
    sc.exists = false
    for k = 1, #FIELDS do
      sc.h[FIELDS[k]] = vals[k]
      if vals[k] then sc.exists = true end
    end
    -- the token frontier paces what calls really use (measured, else the estimate); the call log, checked
    -- as the call starts, holds the whole reservation while it is in flight, so a window stays within tpm
    if sc.tpm > 0 then
      sc.charge = math.min(cost, num(sc.h.ta) > 0 and num(sc.h.ta) or expected)
    end
    local ia = num(sc.h.ia)
    sc.active = ia > 0 and now - ia < sc.window
    sc.slow_r = num(sc.h.gru) > now and num(sc.h.gri) > 0
    sc.slow_t = num(sc.h.gtu) > now and num(sc.h.gti) > 0
    local base = math.max(now, num(sc.h.cd))
    if sc.slow_r then base = math.max(base, num(sc.h.gr)) end
    if sc.slow_t then base = math.max(base, num(sc.h.gt)) end
    local own = class
    local other = (class == 'i') and 'b' or 'i'
    local split = sc.ri > 0 or sc.ti > 0
    local may_borrow = split and (class == 'i' or not sc.active)
    local s = math.max(base, frontier(sc, own))
    sc.lane = own
    if may_borrow and s > base then
      -- borrow the other lane when its next slot is sooner; batch books the interactive lane at most one
      -- interval ahead, so interactive work is never kept waiting by more than about one interval
      local f = frontier(sc, other)
      if f < s and (class == 'i' or f <= base + lookahead(sc, other)) then sc.lane, s = other, math.max(base, f) end
    end
    if not split then sc.lane = 'b' end
    sc.slot = s
    if s > slot then slot, binding = s, i end
    if sc.conc > 0 then
      -- the count below ignores entries past their hold (a dead worker's); a taking admission drops them from
      -- the set it adds to when it sets that set's time to live again (see expiry: about once a span), so each
      -- set is pruned by its own class's admissions
      if mode == 'take' and num(sc.h['x' .. class]) < now + hold + sc.span then
        redis.call('ZREMRANGEBYSCORE', (class == 'i') and sc.cci or sc.ccb, '-inf', now)
      end
      local ni = redis.call('ZCOUNT', sc.cci, '(' .. fmt(now), '+inf')
      local nb = redis.call('ZCOUNT', sc.ccb, '(' .. fmt(now), '+inf')
      sc.own = (class == 'i') and ni or nb  -- 0 when the set may not exist (then it gets its expiry)
      if ni + nb >= sc.conc then blocked = i end
      if class == 'b' and sc.reserve > 0 and sc.conc >= 2 and sc.active then
        local keep = math.floor(sc.conc * sc.reserve + 0.5)
        if keep < 1 then keep = 1 end
        if keep > sc.conc - 1 then keep = sc.conc - 1 end
        if nb >= sc.conc - keep then blocked = i end
      end
    end
    scopes[i] = sc
  end

  local wait = slot - now

  -- Times to live. Each key of a scope must outlive what it holds: the state its frontiers, cooldown, learned
  -- pace and hand-back lines (+ 2 spans), an in-flight set its newest hold (+ a span), the call log and its
  -- tokens their newest call (+ 2 spans). A key's expiry is set one span beyond what it needs and recorded
  -- in the state (fields xs, xi, xb, xl, xt: the absolute expiry, ms on the Redis clock); it is set again only
  -- when what the key needs passes the recorded expiry, or when the key is new (an in-flight set or a call
  -- log emptied and deleted by Redis comes back without one): so about once a span per key, not per call.
  -- The record never promises more than the key has: the state's record dies with the state; the other keys
  -- are only ever created here (with an expiry) or by rl_commit (which never shortens one), and a key that
  -- expired is created again past its record, so it gets a new one.
  -- expiry(sc, f, need, fresh): nil when the key recorded in field f lives `need` ms from now already (and is
  -- not `fresh`); else the new absolute expiry, recorded in sc.h[f] (the caller writes it and sets it)
  local function expiry(sc, f, need, fresh)
    if not fresh and num(sc.h[f]) >= now + need then return nil end
    local at = math.ceil(now + need + sc.span)
    sc.h[f] = at
    return at
  end

  local function state_need(sc)
    local last = now
    for _, f in ipairs({'ri', 'rb', 'ti', 'tb', 'cd', 'gr', 'gru', 'gt', 'gtu', 'qi', 'qb'}) do
      last = math.max(last, num(sc.h[f]))
    end
    last = math.max(last, num(sc.h.ia) + sc.window)
    return last - now + 2 * sc.span
  end

  -- a refusal's writes to a scope's state (fields: name, value pairs, maybe none) and the state's expiry
  local function refused(sc, fields)
    if #fields == 0 and not sc.exists then return end
    local at = expiry(sc, 'xs', state_need(sc), false)
    if at then
      fields[#fields + 1] = 'xs'
      fields[#fields + 1] = at
    end
    if #fields > 0 then redis.call('HSET', sc.state, unpack(fields)) end
    if at then redis.call('PEXPIREAT', sc.state, at) end
  end

  -- an interactive ask is written with whatever else the admission writes to each state (field ia)
  local function asked()
    return class == 'i' and {'ia', fmt(now)} or {}
  end

  if mode == 'check' then
    if blocked > 0 then return {0, '-1', 'concurrency', tostring(blocked)} end
    if wait > horizon then return {0, fmt(wait), 'rate', tostring(binding)} end
    return {1, fmt(wait), '', '0', fmt(now), ''}
  end

  if class == 'i' then
    for i = 1, n do scopes[i].h.ia = now end
  end

  if blocked > 0 then
    for i = 1, n do refused(scopes[i], asked()) end
    return {0, '-1', 'concurrency', tostring(blocked)}
  end

  if wait > horizon then
    -- Refused: give the job a place in this class's hand-back line, so that jobs handed back together
    -- come back spread out at the pace they can be served, a little early (they then wait in-process).
    -- The line is paced at the whole limit, even for batch while interactive work holds its share: due
    -- times are handed out for the whole backlog at once, and when interactive goes quiet batch takes its
    -- share back at once; until then a job back before its lane has room takes a new place in the line.
    local sc = scopes[binding]
    local qf = 'q' .. class
    local served = 0
    if sc.rpm > 0 then
      served = sc.span / sc.rpm
    end
    if sc.tpm > 0 then
      local used = math.min(cost, num(sc.h.ta) > 0 and num(sc.h.ta) or expected)
      served = math.max(served, used * sc.window / sc.tpm)
    end
    local due = math.max(num(sc.h[qf]), now + wait - horizon / 2)
    due = math.min(due, now + wait + 10 * sc.span)
    sc.h[qf] = due + served
    for i = 1, n do
      local fields = asked()
      if i == binding then
        fields[#fields + 1] = qf
        fields[#fields + 1] = fmt(due + served)
      end
      refused(scopes[i], fields)
    end
    return {0, fmt(due - now), 'rate', tostring(binding)}
  end

  local lanes = ''
  local charged = {}
  for i = 1, n do
    local sc = scopes[i]
    local h = sc.h
    local set = {}
    if sc.rb > 0 then
      local f, iv = lane('r', sc.lane, sc.ri, sc.rb, sc.span)
      h[f] = math.max(num(h[f]), slot) + iv
      set[#set + 1] = f
    end
    if sc.tb > 0 then
      local f, iv = lane('t', sc.lane, sc.ti, sc.tb, sc.window)
      h[f] = math.max(num(h[f]), slot) + sc.charge * iv
      set[#set + 1] = f
    end
    if sc.slow_r then
      h.gr = math.max(num(h.gr), slot) + num(h.gri)
      set[#set + 1] = 'gr'
    end
    if sc.slow_t then
      h.gt = math.max(num(h.gt), slot) + cost * num(h.gti)
      set[#set + 1] = 'gt'
    end
    -- usage of this window and the previous one (read by RateLimiter.headroom for the gauge)
    local ws = math.floor(now / sc.window) * sc.window
    if num(h.ws) ~= ws then
      if num(h.ws) == ws - sc.window then
        h.pr, h.pt = num(h.cr), num(h.ct)
      else
        h.pr, h.pt = 0, 0
      end
      h.cr, h.ct, h.ws = 0, 0, ws
    end
    h.cr = num(h.cr) + 1
    h.ct = num(h.ct) + cost
    for _, f in ipairs({'ws', 'cr', 'ct', 'pr', 'pt'}) do set[#set + 1] = f end
    if class == 'i' then set[#set + 1] = 'ia' end
    local args = {}
    for _, f in ipairs(set) do
      args[#args + 1] = f
      args[#args + 1] = fmt(num(h[f]))
    end
    local state_at = expiry(sc, 'xs', state_need(sc), false)
    local zset, zset_at
    if sc.conc > 0 then
      zset = (class == 'i') and sc.cci or sc.ccb
      zset_at = expiry(sc, 'x' .. class, hold + sc.span, sc.own == 0)
    end
    if state_at then
      args[#args + 1] = 'xs'
      args[#args + 1] = state_at
    end
    if zset_at then
      args[#args + 1] = 'x' .. class
      args[#args + 1] = zset_at
    end
    redis.call('HSET', sc.state, unpack(args))
    if state_at then redis.call('PEXPIREAT', sc.state, state_at) end
    if zset then
      redis.call('ZADD', zset, fmt(now + hold), ticket)
      if zset_at then redis.call('PEXPIREAT', zset, zset_at) end
    end
    lanes = lanes .. sc.lane
    charged[i] = fmt(sc.charge)
  end
  local committed = 0
  if wait <= 0 then
    local full = 0
    for i = 1, n do
      local sc = scopes[i]
      if sc.rpm > 0 or sc.tpm > 0 then
        full = math.max(full, log_wait(sc.log, sc.tok, sc.span, sc.window, sc.rpm, sc.tpm, cost, output, now))
      end
    end
    if full > 0 then
      wait = full
    else
      for i = 1, n do
        local sc = scopes[i]
        if sc.rpm > 0 or sc.tpm > 0 then
          log_add(sc.log, sc.tok, ticket, cost, sc.tpm, now)
          -- the log is new when it held no call (its count is known with an rpm; without, it is always set)
          local log_at = expiry(sc, 'xl', 2 * sc.span, sc.rpm == 0 or log_cards[sc.log] == 0)
          local tok_at = sc.tpm > 0 and expiry(sc, 'xt', 2 * sc.span, false) or nil
          if log_at then redis.call('PEXPIREAT', sc.log, log_at) end
          if tok_at then redis.call('PEXPIREAT', sc.tok, tok_at) end
          if log_at and tok_at then
            redis.call('HSET', sc.state, 'xl', log_at, 'xt', tok_at)
          elseif log_at or tok_at then
            redis.call('HSET', sc.state, log_at and 'xl' or 'xt', log_at or tok_at)
          end
        end
      end
      committed = 1
    end
  end
  return {1, fmt(wait), lanes, tostring(committed), fmt(now), table.concat(charged, ',')}
end
