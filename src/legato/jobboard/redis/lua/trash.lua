-- Move a claimed job to the trash. ARGV[4] uuid, [5] owner (JSON), [6] fence, [7] reason.
local uuid = ARGV[4]
local key = k.prefix .. 'job:' .. uuid
local refused = check_owner(key, ARGV[5], ARGV[6], now)
if refused then return refused end
for _, index in ipairs({k.jobs, k.ready, k.delayed, k.claimed}) do
  redis.call('ZREM', index, uuid)
end
redis.call('HSET', key, 'state', '"COMPLETE"', 'owner', 'null', 'lease_expires', 'null',
  'reason', ARGV[7], 'last_modified', fmt(now), 'trashed_on', fmt(now))
redis.call('RENAME', key, k.prefix .. 'trashed:' .. uuid)
redis.call('ZADD', k.trash, now, uuid)
redis.call('PUBLISH', removal_channel(channel, uuid), 'removed ' .. uuid)
return {'OK'}
