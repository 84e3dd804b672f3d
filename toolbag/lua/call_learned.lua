-- uses: rl_reconcile health_learn
-- call_learned (a fragment: functions only): what one vendor call teaches, run by the transition that ends
-- its attempt (complete, end_attempt) in the same step: the model's health learns the outcome (health_learn)
-- and the call's rate-limit ticket is settled (rl_reconcile). Both describe the call, which was made whether
-- or not the job still wanted it, so a transition runs them even when its own fence fails.
-- call_learned(KEYS, ARGV, k, a, now): KEYS[k] the health hash of the model (read only with health arguments),
--   KEYS[k + 1..] rl_reconcile's keys; ARGV[a] how many of the arguments after it are health_learn's (0 or 8),
--   then those, then rl_reconcile's (none: no ticket to settle); now in ms (fractional) on the Redis clock
-- returns the circuit state after learning ('' without) and rl_reconcile's reply ({} without)
local function call_learned(KEYS, ARGV, k, a, now)
  local n_health = tonumber(ARGV[a])
  local health, settled = '', {}
  if n_health > 0 then
    health = health_learn({KEYS[k]}, {unpack(ARGV, a + 1, a + n_health)}, math.floor(now))
  end
  if #ARGV > a + n_health then
    settled = rl_reconcile({unpack(KEYS, k + 1)}, {unpack(ARGV, a + 1 + n_health)}, now)
  end
  return health, settled
end
