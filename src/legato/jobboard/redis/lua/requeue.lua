-- Take a job out of the trash and post it again, as a new job. ARGV[4] the trashed uuid,
-- [5] the new uuid, [6] priority, [7..] field/value pairs (as post.lua's, never delayed).
local trashed = ARGV[4]
if redis.call('ZREM', k.trash, trashed) == 0 then return {'NOTFOUND'} end
redis.call('DEL', k.prefix .. 'trashed:' .. trashed)
local uuid = ARGV[5]
local key = k.prefix .. 'job:' .. uuid
local seq = redis.call('INCR', k.seq)
local score = -tonumber(ARGV[6]) * ONE_PRIORITY + seq
redis.call('HSET', key, unpack(ARGV, 7))
redis.call('ZADD', k.jobs, score, uuid)
redis.call('ZADD', k.ready, score, uuid)
redis.call('HSET', key, 'sequence', string.format('%d', seq), 'available_at', 'null')
redis.call('PUBLISH', channel, 'posted ' .. uuid)
return {'OK', seq}
