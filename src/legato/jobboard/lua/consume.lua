-- Finish a claimed job: it leaves the board. ARGV[4] uuid, [5] owner (JSON), [6] fence.
local uuid = ARGV[4]
local key = k.prefix .. 'job:' .. uuid
local refused = check_owner(key, ARGV[5], ARGV[6], now)
if refused then return refused end
redis.call('DEL', key)
for _, index in ipairs({k.jobs, k.ready, k.delayed, k.claimed}) do
  redis.call('ZREM', index, uuid)
end
redis.call('PUBLISH', removal_channel(channel, uuid), 'removed ' .. uuid)
return {'OK'}
