-- Hand a claim back unstarted: claimable at once, the claim taken back from attempts, the
-- reason kept. ARGV[4] uuid, [5] owner (JSON), [6] fence.
return unclaim(ARGV[4], ARGV[5], ARGV[6], 0, nil, true)
