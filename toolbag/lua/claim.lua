-- claim: a worker takes the attempt named by a delivered message, if the message is current.
-- KEYS[1] job hash   KEYS[2] leases zset   KEYS[3] waiting zset of the job's queue
-- ARGV[1] token carried by the message   ARGV[2] lease ttl (ms)   ARGV[3] worker name
-- returns {1, flat job hash...} when claimed; {0, status, token} when the message is stale
local f = redis.call('HMGET', KEYS[1], 'status', 'token', 'id')
local status, token, id = f[1], f[2], f[3]
if status ~= 'queued' or token ~= ARGV[1] then
  return {0, status or 'missing', token or ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- called_ms 0: this attempt has not called its vendor yet (a field written, not deleted: one command less)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_ms', now, 'worker', ARGV[3], 'called_ms', 0)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id .. ':' .. token)
redis.call('ZREM', KEYS[3], id)
local out = {1}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do out[#out + 1] = all[i] end
return out
