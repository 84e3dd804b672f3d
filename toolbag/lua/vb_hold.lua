-- vb_hold: a claimed batch-tier attempt leaves the worker for a vendor batch's pending collection. The lease
-- moves from the leases zset (the worker's heartbeat) to the held zset (the vendor-batch machinery's), so the
-- lease sweep never ends it as lost; the job stays running with the same token.
-- KEYS[1] job hash   KEYS[2] leases zset   KEYS[3] held zset   KEYS[4] pending hash   KEYS[5] order zset
-- KEYS[6] bytes hash
-- ARGV[1] token   ARGV[2] custom id   ARGV[3] held attempt (json)   ARGV[4] bytes field (<provider>:<model>)
-- ARGV[5] worker name to record ('vendor-batch:<provider>')
-- returns {1} when held; {0, status} when the attempt is no longer current (its lease is left as it was)
local f = redis.call('HMGET', KEYS[1], 'status', 'token', 'id')
local status, token, id = f[1], f[2], f[3]
if status ~= 'running' or token ~= ARGV[1] then
  return {0, status or 'missing'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = id .. ':' .. token
redis.call('ZREM', KEYS[2], member)
redis.call('ZADD', KEYS[3], now, member)
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[5], now, ARGV[2])
redis.call('HINCRBY', KEYS[6], ARGV[4], #ARGV[3])
redis.call('HSET', KEYS[1], 'worker', ARGV[5])
return {1}
