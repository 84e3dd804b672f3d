-- vb_state: move a batch record from one state to the next if it is still in the first (compare and set), so
-- a taker recording its vendor batch and a poller abandoning the same record cannot both win.
-- KEYS[1] batch hash
-- ARGV[1] expected state   ARGV[2] new state   ARGV[3..] more fields to set (name, value, ...)
-- returns 1 when moved (changed_ms is Redis's now), 0 when the record is gone or in another state
if redis.call('HGET', KEYS[1], 'state') ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'changed_ms', now)
if #ARGV > 2 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
end
return 1
