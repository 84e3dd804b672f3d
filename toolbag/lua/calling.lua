-- calling: the running attempt is about to call its vendor; a lease lost from here on may have been paid for.
-- KEYS[1] job hash
-- ARGV[1] token of the attempt
-- returns 1 when recorded (field 'called_ms'), 0 when the attempt is no longer current: do not call
local f = redis.call('HMGET', KEYS[1], 'status', 'token')
local status, token = f[1], f[2]
if status ~= 'running' or token ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'called_ms', now)
return 1
