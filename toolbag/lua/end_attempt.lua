-- end_attempt: a running attempt ended without success (or its lease expired); hand the job to the
-- supervisor by pushing a decision message, atomically.
-- KEYS[1] job hash   KEYS[2] leases zset   KEYS[3] attempts list   KEYS[4] deciding zset
-- KEYS[5] supervisor queue list
-- ARGV[1] token   ARGV[2] outcome   ARGV[3] attempt record (json)   ARGV[4] decision envelope
-- returns {1} or {0, status}; the lease member <id>:<token> is removed either way
local f = redis.call('HMGET', KEYS[1], 'id', 'status', 'token')
local id, status, token = f[1], f[2], f[3]
if id then redis.call('ZREM', KEYS[2], id .. ':' .. ARGV[1]) end
if status ~= 'running' or token ~= ARGV[1] then
  return {0, status or 'missing'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'status', 'deciding', 'outcome', ARGV[2], 'decide_ms', now)
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], now, id)
redis.call('LPUSH', KEYS[5], ARGV[4])
return {1}
