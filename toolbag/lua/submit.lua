-- submit: create jobs and enqueue their first attempts, atomically; honour each one's idempotency key. One call
-- submits a batch of jobs (one or many): the batch shares one TIME, and its writes to shared keys go out once per
-- key (one LPUSH per queue, one ZADD per waiting zset and to the deadlines, one HINCRBY per counter), in the
-- order the jobs were given, so the result is that of submitting them one after another.
-- KEYS[1] deadlines zset   KEYS[2] stats hash (fleet-wide counters: field 'submitted|<tier>|<capability>')
-- KEYS[3..] 5 per job: job hash, idempotency key (or the dummy key when none), queue list, waiting zset of that
--           queue, history list
-- ARGV[1] idempotency ttl (s)   ARGV[2..] per job: job id, use idempotency (1/0), envelope, deadline, relative
-- (ms), n (the number of field, value pairs that follow), then n pairs for the job hash (the field '_history' is
-- the history's first entry instead: why the route chose the first model)
-- returns {created, id, ...} per job: 1 and its id when created, 0 and the existing id when its idempotency key
-- already names a job (one given earlier in the same batch included); an error, before anything is written,
-- when the ttl or a deadline is not a number Redis can keep or a shared key holds another type
local ttl = tonumber(ARGV[1])
if not ttl or ttl ~= math.floor(ttl) or ttl < 1 or ttl > 9e12 then
  return redis.error_reply('submit: the ttl must be a whole number of seconds from 1 to 9e12, got ' .. ARGV[1])
end
local jobs = {}
local a = 2
while a <= #ARGV do
  local deadline_in = tonumber(ARGV[a + 3])
  if not deadline_in or deadline_in ~= math.floor(deadline_in) or deadline_in < 1 or deadline_in > 9e15 then
    return redis.error_reply('submit: the deadline must be a whole number of ms from 1 to 9e15, got ' .. ARGV[a + 3])
  end
  local n = tonumber(ARGV[a + 4])
  jobs[#jobs + 1] = {id = ARGV[a], idem = ARGV[a + 1] == '1', envelope = ARGV[a + 2], deadline_in = deadline_in,
                     first = a + 5, last = a + 4 + 2 * n}
  a = a + 5 + 2 * n
end
-- every shared key is checked before anything is written: a batch never stops half-written
local kinds = {[KEYS[1]] = 'zset', [KEYS[2]] = 'hash'}
for j = 1, #jobs do
  local k = 2 + (j - 1) * 5
  kinds[KEYS[k + 3]] = 'list'
  kinds[KEYS[k + 4]] = 'zset'
  if jobs[j].idem then kinds[KEYS[k + 2]] = 'string' end
end
for key, kind in pairs(kinds) do
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= kind then
    return redis.error_reply('submit: key ' .. key .. ' holds a ' .. found .. ', not a ' .. kind .. '; nothing was submitted')
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local pushes, waiting, order = {}, {}, {}  -- queue key -> envelopes; waiting key -> members; queue keys in order
local deadlines, counts, counted = {}, {}, {}
for j, job in ipairs(jobs) do
  local k = 2 + (j - 1) * 5
  local existing = job.idem and redis.call('GET', KEYS[k + 2])
  if existing then
    out[#out + 1] = 0
    out[#out + 1] = existing
  else
    local deadline = now + job.deadline_in
    local fields = {'id', job.id, 'status', 'queued', 'token', '1', 'attempt', '1',
                    'created_ms', now, 'enqueued_ms', now, 'deadline_ms', deadline}
    local given = {}
    for i = job.first, job.last, 2 do
      if ARGV[i] == '_history' then
        redis.call('RPUSH', KEYS[k + 5], ARGV[i + 1])
      else
        fields[#fields + 1] = ARGV[i]
        fields[#fields + 1] = ARGV[i + 1]
        given[ARGV[i]] = ARGV[i + 1]
      end
    end
    redis.call('HSET', KEYS[k + 1], unpack(fields))
    if job.idem then
      redis.call('SET', KEYS[k + 2], job.id, 'EX', ttl)
    end
    local queue, wait = KEYS[k + 3], KEYS[k + 4]
    if not pushes[queue] then
      pushes[queue] = {}
      order[#order + 1] = queue
    end
    pushes[queue][#pushes[queue] + 1] = job.envelope
    waiting[queue] = waiting[queue] or {wait}
    local w = waiting[queue]
    w[#w + 1] = now
    w[#w + 1] = job.id
    deadlines[#deadlines + 1] = deadline
    deadlines[#deadlines + 1] = job.id
    local field = 'submitted|' .. (given['tier'] or '') .. '|' .. (given['capability'] or '')
    if not counts[field] then counted[#counted + 1] = field end
    counts[field] = (counts[field] or 0) + 1
    out[#out + 1] = 1
    out[#out + 1] = job.id
  end
end
for _, queue in ipairs(order) do
  redis.call('LPUSH', queue, unpack(pushes[queue]))
  local w = waiting[queue]
  redis.call('ZADD', w[1], unpack(w, 2))
end
if #deadlines > 0 then
  redis.call('ZADD', KEYS[1], unpack(deadlines))
end
for _, field in ipairs(counted) do
  redis.call('HINCRBY', KEYS[2], field, counts[field])
end
return out
