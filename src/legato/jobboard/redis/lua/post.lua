-- Post a job. ARGV[4] uuid, [5] priority, [6] delay seconds, [7..] field/value pairs.
local uuid = ARGV[4]
local key = k.prefix .. 'job:' .. uuid
if redis.call('EXISTS', key) == 1 then return {'EXISTS'} end
local seq = redis.call('INCR', k.seq)
local score = -tonumber(ARGV[5]) * ONE_PRIORITY + seq
local delay = tonumber(ARGV[6])
local available = 'null'
redis.call('HSET', key, unpack(ARGV, 7))
redis.call('ZADD', k.jobs, score, uuid)
if delay > 0 then
  available = fmt(now + delay)
  redis.call('ZADD', k.delayed, now + delay, uuid)
else
  redis.call('ZADD', k.ready, score, uuid)
end
redis.call('HSET', key, 'sequence', string.format('%d', seq), 'available_at', available)
redis.call('PUBLISH', channel, 'posted ' .. uuid)
return {'OK', seq, available}
