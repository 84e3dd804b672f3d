-- uses: rl_log rl_admit
-- rl_acquire: one admission try on its own (rl_admit: the rule, its keys, arguments and reply); claim.lua runs
-- the same function inside the fenced claim, so an attempt's first try costs no script call of its own.
local t = redis.call('TIME')
return rl_admit(KEYS, ARGV, tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000)
