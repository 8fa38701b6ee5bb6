-- Housekeeping before listing claimable jobs. ARGV[4] limit.
-- Also sets aside undecodable entries at the head of "ready", so a waiter does not meet (and
-- warn about) the same garbage on every poll.
local limit = tonumber(ARGV[4])
promote(k, now, limit)
for _ = 1, limit do
  local first = redis.call('ZRANGE', k.ready, 0, 0)
  if #first == 0 or is_valid(job_values(k.prefix .. 'job:' .. first[1])) then break end
  set_aside(k, first[1])
end
return {'OK'}
