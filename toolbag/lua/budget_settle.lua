-- budget_settle: charge an attempt's actual cost to the budgets its job reserved in, consuming the
-- reservation; ``final`` gives back what is left of it (the job succeeded).
-- KEYS[1] the job's budget hash   KEYS[2] pending zset   KEYS[3] the webhook outbox stream
-- KEYS[4..] the scope hashes to charge
-- ARGV[1] job id   ARGV[2] cost (nano-USD)   ARGV[3] final (1/0)   ARGV[4] webhook URL ('' for none)
-- ARGV[5..] per scope, two each: soft limit (nano-USD, 0: none), the soft-limit notification (JSON object)
-- returns per scope: {spent, reserved, 1 when this charge crossed the soft limit first, else 0}
-- A first crossing with a webhook URL adds its notification to the outbox in this same step (the fields of
-- toolbag.escalations.outbox.entry_fields, ``spent_usd`` filled in here), so it is written exactly once.
local cost = tonumber(ARGV[2])
local left = tonumber(redis.call('HGET', KEYS[1], 'left') or '0') or 0
local consume = math.min(cost, left)
local give_back = consume
if ARGV[3] == '1' then give_back = left end
local out = {}
local now_ms = nil
for i = 4, #KEYS do
  local k = KEYS[i]
  local arg = 5 + (i - 4) * 2
  local spent = redis.call('HINCRBY', k, 'spent', cost)
  local reserved = tonumber(redis.call('HGET', k, 'reserved') or '0') or 0
  if give_back > 0 then
    reserved = redis.call('HINCRBY', k, 'reserved', -math.min(give_back, reserved))
  end
  local soft = tonumber(ARGV[arg])
  local crossed = 0
  if soft > 0 and spent >= soft and redis.call('HSETNX', k, 'soft_warned', 1) == 1 then crossed = 1 end
  if crossed == 1 and ARGV[4] ~= '' then
    if now_ms == nil then
      local t = redis.call('TIME')
      now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    local body = cjson.decode(ARGV[arg + 1])
    body['spent_usd'] = spent / 1e9
    redis.call('XADD', KEYS[3], '*', 'url', ARGV[4], 'body', cjson.encode(body), 'attempts', 0,
      'created_ms', now_ms, 'due_ms', now_ms, 'delivery_id', '')
  end
  out[#out + 1] = {tostring(spent), tostring(reserved), crossed}
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'left', left - give_back)
end
if ARGV[3] == '1' then redis.call('ZREM', KEYS[2], ARGV[1]) end
return out
