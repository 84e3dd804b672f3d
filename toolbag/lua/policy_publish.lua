-- policy_publish: make a policy version the fleet's live policy, and audit it, atomically.
-- KEYS[1] policy hash (version, digest, text, source, published_ms, published_by)   KEYS[2] audit stream
-- ARGV[1] version   ARGV[2] digest   ARGV[3] text   ARGV[4] source (file path)   ARGV[5] force ("1" | "0")
-- ARGV[6] audit stream maxlen   ARGV[7] who (host:pid or user)
-- A version lower than the live one is refused ('older'), and so is the same version with other text
-- ('conflict': bump the version), unless forced (a deliberate rollback). The same text is 'unchanged'.
-- returns {status, live version, live digest} where status is published | unchanged | older | conflict
local live_digest = redis.call('HGET', KEYS[1], 'digest')
local live_version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') or 0
if live_digest == ARGV[2] then
  return {'unchanged', live_version, live_digest}
end
local version = tonumber(ARGV[1])
if ARGV[5] ~= '1' and live_digest then
  if version < live_version then
    return {'older', live_version, live_digest}
  end
  if version == live_version then
    return {'conflict', live_version, live_digest}
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'version', version, 'digest', ARGV[2], 'text', ARGV[3], 'source', ARGV[4],
           'published_ms', now, 'published_by', ARGV[7])
local reason = 'published'
if live_digest then
  reason = 'replaced version ' .. live_version .. ' (' .. live_digest .. ')'
end
if ARGV[5] == '1' then
  reason = reason .. ' (forced)'
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'kind', 'policy', 'event', 'publish',
           'policy_version', version, 'policy_digest', ARGV[2], 'reason', reason, 'detail', ARGV[4],
           'host', ARGV[7], 'ts_ms', now)
return {'published', version, ARGV[2]}
