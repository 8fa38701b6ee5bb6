-- Claim one given job. ARGV[4] uuid, [5] owner (JSON), [6] ttl seconds.
local uuid = ARGV[4]
local key = k.prefix .. 'job:' .. uuid
local v = job_values(key)
if v and not v[STATE] and redis.call('EXISTS', key) == 0 then return {'NOTFOUND'} end
if not is_valid(v) then return {'BAD'} end
local owner = live_owner(v[STATE], v[OWNER], v[LEASE], now)
if owner then return {'UNCLAIMABLE', owner} end
if v[AVAILABLE] ~= 'null' and tonumber(v[AVAILABLE]) > now then
  return {'UNCLAIMABLE', 'null'}
end
return take(k, uuid, key, v, ARGV[5], tonumber(ARGV[6]), now)
