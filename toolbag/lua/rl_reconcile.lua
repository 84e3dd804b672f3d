-- rl_reconcile (a fragment: functions only): an admitted attempt ended. Release its in-flight entry,
-- reconcile the tokens reserved with the tokens used (a refund moves the lane's token frontier back; using more than reserved moves it on,
-- a debt the next requests pay), and learn from the vendor: a 429 cools the model down; rate-limit
-- headers saying the remaining budget would run out before it resets slow the pace until the reset.
--
-- KEYS, 5 per scope in order: state hash, in-flight zset (interactive), in-flight zset (others), call log,
-- token hash of the call log (rl_log: the call's entry drops from its reservation to what it used)
-- ARGV[1] ticket id   ARGV[2] refund: tokens reserved minus tokens used (may be negative)
-- ARGV[3] number of scopes   ARGV[4] cooldown (ms; 0 = none)
-- ARGV[5] requests remaining   ARGV[6] requests reset (ms from now)   ARGV[7] requests limit (header)
-- ARGV[8] tokens remaining     ARGV[9] tokens reset (ms from now)     ARGV[10] tokens limit (header)
--         (-1 = the vendor did not say)
-- ARGV[11] tokens the call used (-1 = unknown): kept as an average per scope (field ta), which paces the
--          hand-back line at what calls really cost rather than at what they reserve
-- ARGV[12..] 9 per scope: lane charged ('i', 'b'), learn (1 = vendor signals apply to this scope),
--            window (ms), margin (ms), rpm, tpm, interactive reserve, tokens the lane's token frontier was
--            charged (-1 = the reservation: the refund applies as it is), the in-flight zset the admission
--            took an entry in ('i', 'b'; '-' none; '' unknown: both are cleared)
-- returns {cooled, slowed_requests, slowed_tokens} (1 when that signal changed the pace)
-- The state hash is read once (every field a scope's state may hold) and written once.
-- rl_reconcile(KEYS, ARGV, now): KEYS and ARGV as above (a script passes its own, or a slice of them), now in
-- ms (fractional) on the Redis clock
local RL_STATE_FIELDS = {'ri', 'rb', 'ti', 'tb', 'ia', 'cd', 'gr', 'gri', 'gru', 'gt', 'gti', 'gtu', 'qi', 'qb',
                         'ws', 'cr', 'ct', 'pr', 'pt', 'ta', 'xs'}

local function rl_reconcile(KEYS, ARGV, now)
  local ticket = ARGV[1]
  local refund = tonumber(ARGV[2])
  local n = tonumber(ARGV[3])
  local cooldown = tonumber(ARGV[4])
  local r_rem, r_reset, r_limit = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  local t_rem, t_reset, t_limit = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
  local actual = tonumber(ARGV[11])
  local LOW_SHARE = 0.1  -- without a configured limit, slow down below this share of the vendor's limit

  local function num(v) return tonumber(v) or 0 end
  local function fmt(v) return string.format('%.3f', v) end

  local cooled, slowed_r, slowed_t = 0, 0, 0
  for i = 1, n do
    local a = 11 + (i - 1) * 9
    local ln, learn = ARGV[a + 1], ARGV[a + 2]
    local window, margin = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    local rpm, tpm, reserve = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7])
    local charged = tonumber(ARGV[a + 8])
    local held = ARGV[a + 9]
    -- what the frontier gets back: it was charged the expected use, not the reservation; a call that used
    -- more pays the difference (the frontier moves on), one that used less gets it back
    local frontier_refund = refund
    if charged >= 0 then
      if actual >= 0 then
        frontier_refund = charged - actual
      elseif refund == 0 then
        frontier_refund = 0  -- unknown use (a timeout, a cut stream): keep the charge
      else
        frontier_refund = charged  -- nothing used (refused before generating)
      end
    end
    local span = window + margin
    local state = KEYS[(i - 1) * 5 + 1]
    if held == 'i' or held == '' then redis.call('ZREM', KEYS[(i - 1) * 5 + 2], ticket) end
    if held == 'b' or held == '' then redis.call('ZREM', KEYS[(i - 1) * 5 + 3], ticket) end
    local tok = KEYS[(i - 1) * 5 + 5]
    if refund ~= 0 and tpm > 0 then
      local got = redis.call('HMGET', tok, ticket, '~sum')
      local logged = tonumber(got[1])
      if logged then
        local now_logged = math.max(0, logged - refund)
        local sum = (tonumber(got[2]) or 0) + now_logged - logged
        redis.call('HSET', tok, ticket, now_logged, '~sum', string.format('%.17g', sum))
      end
    end
    local vals = redis.call('HMGET', state, unpack(RL_STATE_FIELDS))
    local h, exists = {}, false
    for k = 1, #RL_STATE_FIELDS do
      h[RL_STATE_FIELDS[k]] = vals[k]
      if vals[k] then exists = true end
    end
    local set, gone = {}, {}
    if exists and frontier_refund ~= 0 and tpm > 0 and ln ~= '' then
      local field, per_token
      if ln == 'i' and reserve > 0 then
        field, per_token = 'ti', window / (tpm * reserve)
      else
        field, per_token = 'tb', window / (tpm * (1 - math.max(reserve, 0)))
      end
      local f = tonumber(h[field])
      if f then set[field] = fmt(f - frontier_refund * per_token) end
    end
    if exists and refund ~= 0 then
      if num(h.gtu) > now and num(h.gti) > 0 then
        set.gt = fmt(num(h.gt) - refund * num(h.gti))
      end
      set.ct = fmt(math.max(0, num(h.ct) - refund))
    end
    if exists and actual >= 0 and tpm > 0 then
      local ta = tonumber(h.ta)
      set.ta = fmt(ta and (0.8 * ta + 0.2 * actual) or actual)
    end
    local cd = num(h.cd)
    if learn == '1' then
      local function cool(ms)
        if now + ms > cd then
          cd = now + ms
          set.cd = fmt(cd)
          cooled = 1
        end
      end
      if cooldown > 0 then cool(cooldown) end
      -- would our configured pace spend what the vendor says is left before it resets? (requests, then
      -- tokens: their interval and until fields, and the interval's precision: a token's interval is tiny)
      local function pace_from(rem, reset, limit, per_minute, interval_field, until_field, precision)
        if rem < 0 or reset < 0 then return 0 end
        if rem == 0 then
          cool(reset)
          return 0
        end
        local pace = per_minute > 0 and span / per_minute or 0
        local slowed = 0
        local short = (pace > 0 and rem * pace < reset) or (pace == 0 and limit > 0 and rem < LOW_SHARE * limit)
        if short then
          local interval = reset / rem
          if num(h[until_field]) <= now or interval > num(h[interval_field]) then slowed = 1 end
          set[interval_field], set[until_field] = string.format(precision, interval), fmt(now + reset)
        elseif (pace > 0 and rem * pace >= 2 * reset) or (pace == 0 and limit > 0 and rem >= 2 * LOW_SHARE * limit) then
          if h[interval_field] then gone[#gone + 1] = interval_field end
          if h[until_field] then gone[#gone + 1] = until_field end
        end
        return slowed
      end
      slowed_r = math.max(slowed_r, pace_from(r_rem, r_reset, r_limit, rpm, 'gri', 'gru', '%.3f'))
      slowed_t = math.max(slowed_t, pace_from(t_rem, t_reset, t_limit, tpm, 'gti', 'gtu', '%.9f'))
    end
    -- keep the state while what it learned applies: a cooldown, or a slower pace until the vendor's reset (a
    -- settle that learned nothing with a time to it leaves the time to live alone: it covers what the admissions
    -- and the settles before wrote). An admission gave the state its time to live and recorded it (field xs,
    -- see rl_admit); it only grows here, and only when the record falls short, one span beyond what is needed
    -- (a state this settle creates has none yet: it gets one)
    local at
    if learn == '1' and (set.cd or set.gru or set.gtu or (not exists and next(set) ~= nil)) then
      local need = math.max(cd, now + math.max(r_reset, t_reset, 0)) + 2 * span
      if not exists or num(h.xs) < need then
        at = math.ceil(need + span)
        set.xs = at
      end
    end
    local args = {}
    for field, value in pairs(set) do
      args[#args + 1] = field
      args[#args + 1] = value
    end
    if #args > 0 then redis.call('HSET', state, unpack(args)) end
    if #gone > 0 then redis.call('HDEL', state, unpack(gone)) end
    if at then
      if exists then
        redis.call('PEXPIREAT', state, at, 'GT')  -- never shortens one an admission set
      else
        redis.call('PEXPIREAT', state, at)
      end
    end
  end
  return {cooled, slowed_r, slowed_t}
end
