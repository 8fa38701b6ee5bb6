-- Finish a claimed job: it leaves the board. ARGV[4] uuid, [5] owner (JSON), [6] fence.
return consume(ARGV[4], ARGV[5], ARGV[6])
