-- Release a claim. ARGV[4] uuid, [5] owner (JSON), [6] fence, [7] delay seconds,
-- [8] reason (JSON).
local uuid = ARGV[4]
local key = k.prefix .. 'job:' .. uuid
local refused = check_owner(key, ARGV[5], ARGV[6], now)
if refused then return refused end
local delay = tonumber(ARGV[7])
local available = 'null'
redis.call('ZREM', k.claimed, uuid)
if delay > 0 then
  available = fmt(now + delay)
  redis.call('ZADD', k.delayed, now + delay, uuid)
else
  redis.call('ZADD', k.ready, redis.call('ZSCORE', k.jobs, uuid) or 0, uuid)
end
redis.call('HSET', key, 'state', '"UNCLAIMED"', 'owner', 'null', 'lease_expires', 'null',
  'available_at', available, 'reason', ARGV[8], 'last_modified', fmt(now))
redis.call('PUBLISH', channel, 'abandoned ' .. uuid)
return {'OK', available}
