-- Record a live entity and drop a bounded number of lapsed ones.
-- ARGV[4] name, [5] entity JSON, [6] ttl seconds.
local lapsed = redis.call('ZRANGEBYSCORE', k.expiry, '-inf', now, 'LIMIT', 0, 100)
for _, name in ipairs(lapsed) do
  redis.call('HDEL', k.entities, name)
  redis.call('ZREM', k.expiry, name)
end
redis.call('HSET', k.entities, ARGV[4], ARGV[5])
redis.call('ZADD', k.expiry, now + tonumber(ARGV[6]), ARGV[4])
return {'OK'}
