-- Extend a claim. ARGV[4] uuid, [5] owner (JSON), [6] fence ('' = any), [7] ttl seconds.
local uuid = ARGV[4]
local key = k.prefix .. 'job:' .. uuid
local refused = check_owner(key, ARGV[5], ARGV[6], now)
if refused then return refused end
local lease = now + tonumber(ARGV[7])
redis.call('HSET', key, 'lease_expires', fmt(lease), 'last_modified', fmt(now))
redis.call('ZADD', k.claimed, lease, uuid)
-- The cancel mark (JSON, 'null' when none): how the owner learns the job was cancelled.
return {'OK', fmt(lease), redis.call('HGET', key, 'cancel') or 'null'}
