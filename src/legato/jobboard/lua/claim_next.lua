-- Claim the first ready job. ARGV[4] owner (JSON), [5] ttl seconds, [6] housekeeping limit.
-- Work is bounded: at most `limit` delayed/expired jobs are promoted and at most `limit`
-- undecodable entries set aside per call ('AGAIN' asks the caller to call once more).
local limit = tonumber(ARGV[6])
promote(k, now, limit)
for _ = 1, limit do
  local first = redis.call('ZRANGE', k.ready, 0, 0)
  if #first == 0 then return {'EMPTY'} end
  local uuid = first[1]
  local key = k.prefix .. 'job:' .. uuid
  if not is_valid(key) then
    set_aside(k, uuid)
  elseif live_owner(key, now) then
    redis.call('ZREM', k.ready, uuid)  -- stale index entry: the claimed set has it
  else
    return take(k, uuid, key, ARGV[4], tonumber(ARGV[5]), now)
  end
end
return {'AGAIN'}
