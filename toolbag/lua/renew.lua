-- renew: extend the leases a worker still holds and mark the worker present, both on Redis's clock.
-- KEYS[1] leases zset   KEYS[2] workers zset
-- ARGV[1] lease ttl (ms)   ARGV[2] worker presence <provider>|<name> ('' for none)   ARGV[3..] lease members
-- returns the lease members already gone (swept as lost, or the job ended): a gone lease is never resurrected
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[1])
local gone = {}
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', deadline, ARGV[i])
  else
    gone[#gone + 1] = ARGV[i]
  end
end
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[2], now, ARGV[2])
end
return gone
