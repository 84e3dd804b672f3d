-- budget_release: give back all that is left of a job's reservation (a submit that created no job).
-- KEYS[1] the job's budget hash   KEYS[2] pending zset   ARGV[1] job id
local f = redis.call('HMGET', KEYS[1], 'left', 'keys')
local left = tonumber(f[1] or '0') or 0
if left > 0 and f[2] then
  for k in string.gmatch(f[2], '%S+') do
    redis.call('HINCRBY', k, 'reserved', -left)
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return left
