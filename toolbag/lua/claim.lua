-- uses: rl_log rl_admit
-- claim: a worker takes the attempt named by a delivered message, if the message is current; with an
-- admission, the attempt's first rate-limit try (rl_admit) is made in the same step, and an admitted call due
-- now is marked calling too (called_ms), so a worker's attempt starts in one script call.
-- KEYS[1] job hash   KEYS[2] leases zset   KEYS[3] waiting zset of the job's queue
-- KEYS[4..] with an admission: rl_admit's keys (5 per scope)
-- ARGV[1] token carried by the message   ARGV[2] lease ttl (ms)   ARGV[3] worker name
-- ARGV[4] 'record': reply with the job hash (a caller that read the hash before passes 'known')
-- ARGV[5..] with an admission: rl_admit's arguments
-- returns {1, started_ms, called, grant, flat job hash (with 'record')...} when claimed: called 1 when the
--         admission committed a call due now (the attempt is marked calling); grant rl_admit's reply ({} without
--         an admission; a refusal still claims: the worker hands the job back, as after any refusal)
--         {0, status, token} when the message is stale: nothing written, no admission tried
local all, status, token, id
if ARGV[4] == 'record' then
  all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local k = all[i]
    if k == 'status' then status = all[i + 1] elseif k == 'token' then token = all[i + 1]
    elseif k == 'id' then id = all[i + 1] end
  end
else
  local f = redis.call('HMGET', KEYS[1], 'status', 'token', 'id')
  status, token, id = f[1], f[2], f[3]
end
if status ~= 'queued' or token ~= ARGV[1] then
  return {0, status or 'missing', token or ''}
end
local t = redis.call('TIME')
local now_f = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local now = math.floor(now_f)
local grant, called = {}, 0
if #ARGV > 4 then
  grant = rl_admit({unpack(KEYS, 4)}, {unpack(ARGV, 5)}, now_f)
  if grant[1] == 1 and grant[4] == '1' then called = now end
end
-- called_ms 0: this attempt has not called its vendor yet (a field written, not deleted: one command less)
local set = {status = 'running', started_ms = now, worker = ARGV[3], called_ms = called}
redis.call('HSET', KEYS[1], 'status', 'running', 'started_ms', now, 'worker', ARGV[3], 'called_ms', called)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id .. ':' .. token)
redis.call('ZREM', KEYS[3], id)
local out = {1, now, called > 0 and 1 or 0, grant}
if all then
  for i = 1, #all, 2 do
    local k = all[i]
    out[#out + 1] = k
    if set[k] ~= nil then out[#out + 1] = set[k]; set[k] = nil else out[#out + 1] = all[i + 1] end
  end
  for _, k in ipairs({'status', 'started_ms', 'worker', 'called_ms'}) do
    if set[k] ~= nil then out[#out + 1] = k; out[#out + 1] = set[k] end
  end
end
return out
