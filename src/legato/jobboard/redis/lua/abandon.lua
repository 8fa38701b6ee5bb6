-- Give up a claim; the job may be claimed again after the delay. ARGV[4] uuid, [5] owner
-- (JSON), [6] fence, [7] delay seconds, [8] reason (JSON).
return unclaim(ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], false)
