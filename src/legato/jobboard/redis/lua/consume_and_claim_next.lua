-- consume.lua then claim_next.lua in one call. ARGV[4] uuid, [5] owner (JSON), [6] fence,
-- [7] ttl seconds, [8] housekeeping limit. A refused consume is returned as it is, and then
-- nothing is claimed.
local consumed = consume(ARGV[4], ARGV[5], ARGV[6])
if consumed[1] ~= 'OK' then return consumed end
return claim_next(ARGV[5], tonumber(ARGV[7]), tonumber(ARGV[8]))
