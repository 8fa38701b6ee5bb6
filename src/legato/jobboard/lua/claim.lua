-- Claim one given job. ARGV[4] uuid, [5] owner (JSON), [6] ttl seconds.
local uuid = ARGV[4]
local key = k.prefix .. 'job:' .. uuid
if redis.call('EXISTS', key) == 0 then return {'NOTFOUND'} end
if not is_valid(key) then return {'BAD'} end
local owner = live_owner(key, now)
if owner then return {'UNCLAIMABLE', owner} end
local available = redis.call('HGET', key, 'available_at')
if available and available ~= 'null' and tonumber(available) > now then
  return {'UNCLAIMABLE', 'null'}
end
return take(k, uuid, key, ARGV[5], tonumber(ARGV[6]), now)
