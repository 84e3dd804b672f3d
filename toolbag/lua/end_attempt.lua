-- uses: call_learned
-- end_attempt: a running attempt ended without success (or its lease expired); hand the job to the
-- supervisor by pushing a decision message, atomically. A worker's failed call also has what it teaches
-- learned in the same step (call_learned: the health update and the rate-limit settle, current or not).
-- KEYS[1] job hash   KEYS[2] leases zset   KEYS[3] attempts list   KEYS[4] deciding zset
-- KEYS[5] supervisor queue list   KEYS[6..] call_learned's keys (the health hash, then rl_reconcile's)
-- ARGV[1] token   ARGV[2] outcome   ARGV[3] attempt record (json)   ARGV[4] decision envelope
-- ARGV[5..] call_learned's arguments
-- returns {1, health, settled} or {0, status, health, settled}; the lease member <id>:<token> is removed
-- either way
local t = redis.call('TIME')
local now_f = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local health, settled = call_learned(KEYS, ARGV, 6, 5, now_f)
local f = redis.call('HMGET', KEYS[1], 'id', 'status', 'token')
local id, status, token = f[1], f[2], f[3]
if id then redis.call('ZREM', KEYS[2], id .. ':' .. ARGV[1]) end
if status ~= 'running' or token ~= ARGV[1] then
  return {0, status or 'missing', health, settled}
end
local now = math.floor(now_f)
redis.call('HSET', KEYS[1], 'status', 'deciding', 'outcome', ARGV[2], 'decide_ms', now)
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], now, id)
redis.call('LPUSH', KEYS[5], ARGV[4])
return {1, health, settled}
