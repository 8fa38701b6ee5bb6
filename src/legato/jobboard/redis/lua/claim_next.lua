-- Claim the first ready job. ARGV[4] owner (JSON), [5] ttl seconds, [6] housekeeping limit.
return claim_next(ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]))
