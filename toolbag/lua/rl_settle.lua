-- uses: rl_reconcile
-- rl_settle: settle one admitted call on its own (rl_reconcile: the rule, its keys, arguments and reply); the
-- complete script runs the same function in the completion's step.
local t = redis.call('TIME')
return rl_reconcile(KEYS, ARGV, tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000)
