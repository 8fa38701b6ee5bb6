-- Cancel a job. ARGV[4] uuid, [5] the cancel mark (JSON string). A job with a live claim gets
-- the mark for its owner ({'MARKED'}); any other goes to the trash with it ({'TRASHED'}).
local uuid = ARGV[4]
local key = k.prefix .. 'job:' .. uuid
local h = redis.pcall('HMGET', key, 'state', 'owner', 'lease_expires')
if h.err then return {'BAD'} end
if not h[1] and redis.call('EXISTS', key) == 0 then return {'NOTFOUND'} end
if not (is_state(h[1]) and is_time(h[3])) then return {'BAD'} end
if live_owner(h[1], h[2], h[3], now) then
  redis.call('HSET', key, 'cancel', ARGV[5], 'last_modified', fmt(now))
  return {'MARKED'}
end
for _, index in ipairs({k.jobs, k.ready, k.delayed, k.claimed}) do
  redis.call('ZREM', index, uuid)
end
redis.call('HSET', key, 'state', '"COMPLETE"', 'owner', 'null', 'lease_expires', 'null',
  'reason', ARGV[5], 'last_modified', fmt(now), 'trashed_on', fmt(now))
redis.call('RENAME', key, k.prefix .. 'trashed:' .. uuid)
redis.call('ZADD', k.trash, now, uuid)
redis.call('PUBLISH', removal_channel(channel, uuid), 'removed ' .. uuid)
return {'TRASHED'}
