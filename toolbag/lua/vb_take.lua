-- vb_take: take the oldest attempts of a pending collection into a new batch record in state 'creating', in
-- one step: an attempt is always in exactly one place (pending, or a batch record), so a taker that dies
-- before its vendor call leaves a record the poller recovers after fleet.vendor_batch.creating_timeout_s.
-- Attempts whose job moved on meanwhile (cancelled, expired, swept) are dropped here, never sent.
-- KEYS[1] pending hash   KEYS[2] order zset   KEYS[3] bytes hash   KEYS[4] batch hash   KEYS[5] items hash
-- KEYS[6] open zset   KEYS[7] held zset
-- ARGV[1] max requests   ARGV[2] max bytes   ARGV[3] bytes field   ARGV[4] job key prefix ('<p>job:')
-- ARGV[5] provider   ARGV[6] model   ARGV[7] batch id
-- returns {dropped, custom id 1, attempt 1, custom id 2, attempt 2, ...}
local ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
local max_bytes = tonumber(ARGV[2])
local taken, bytes, dropped, n = {}, 0, 0, 0
for _, cid in ipairs(ids) do
  local item = redis.call('HGET', KEYS[1], cid)
  if item and n > 0 and bytes + #item > max_bytes then break end
  redis.call('ZREM', KEYS[2], cid)
  if item then
    redis.call('HDEL', KEYS[1], cid)
    redis.call('HINCRBY', KEYS[3], ARGV[3], -#item)
    local held = cjson.decode(item)
    local f = redis.call('HMGET', ARGV[4] .. held['job'], 'status', 'token')
    if f[1] ~= 'running' or f[2] ~= held['token'] then
      redis.call('ZREM', KEYS[7], held['job'] .. ':' .. held['token'])
      dropped = dropped + 1
    else
      n = n + 1
      bytes = bytes + #item
      taken[#taken + 1] = cid
      taken[#taken + 1] = item
    end
  end
end
if n > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[4], 'state', 'creating', 'provider', ARGV[5], 'model', ARGV[6], 'created_ms', now,
             'changed_ms', now, 'items', n, 'vendor_id', '')
  redis.call('HSET', KEYS[5], unpack(taken))
  redis.call('ZADD', KEYS[6], now, ARGV[7])
end
local out = {dropped}
for i = 1, #taken do out[#out + 1] = taken[i] end
return out
