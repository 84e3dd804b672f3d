-- uses: health_learn
-- health_record: learn from one attempt's outcome on its own (health_learn: the rule, its keys, arguments and
-- reply); the complete script runs the same function in the completion's step.
local t = redis.call('TIME')
return health_learn(KEYS, ARGV, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
