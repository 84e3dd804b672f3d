-- budget_settle: charge an attempt's actual cost to the budgets its job reserved in, consuming the
-- reservation; ``final`` gives back what is left of it (the job succeeded).
-- KEYS[1] the job's budget hash   KEYS[2] pending zset   KEYS[3..] the scope hashes to charge
-- ARGV[1] job id   ARGV[2] cost (nano-USD)   ARGV[3] final (1/0)   ARGV[4..] per scope: soft limit (nano-USD, 0: none)
-- returns per scope: {spent, reserved, 1 when this charge crossed the soft limit first, else 0}
local cost = tonumber(ARGV[2])
local left = tonumber(redis.call('HGET', KEYS[1], 'left') or '0') or 0
local consume = math.min(cost, left)
local give_back = consume
if ARGV[3] == '1' then give_back = left end
local out = {}
for i = 3, #KEYS do
  local k = KEYS[i]
  local spent = redis.call('HINCRBY', k, 'spent', cost)
  local reserved = tonumber(redis.call('HGET', k, 'reserved') or '0') or 0
  if give_back > 0 then
    reserved = redis.call('HINCRBY', k, 'reserved', -math.min(give_back, reserved))
  end
  local soft = tonumber(ARGV[1 + i])
  local crossed = 0
  if soft > 0 and spent >= soft and redis.call('HSETNX', k, 'soft_warned', 1) == 1 then crossed = 1 end
  out[#out + 1] = {tostring(spent), tostring(reserved), crossed}
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'left', left - give_back)
end
if ARGV[3] == '1' then redis.call('ZREM', KEYS[2], ARGV[1]) end
return out
