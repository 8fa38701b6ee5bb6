-- Live entities' JSON, in name order.
local names = redis.call('ZRANGEBYSCORE', k.expiry, '(' .. fmt(now), '+inf')
table.sort(names)
if #names == 0 then return {} end
return redis.call('HMGET', k.entities, unpack(names))
