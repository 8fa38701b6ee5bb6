-- Housekeeping only (before listing claimable jobs). ARGV[4] limit.
promote(k, now, tonumber(ARGV[4]))
return {'OK'}
