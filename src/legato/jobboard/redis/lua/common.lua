-- Helpers shared by every Legato jobboard script (prepended to each script by board.py), and
-- the bodies of the steps that scripts combine or share (consume, claim_next, unclaim).
-- Job hashes hold JSON-encoded values; "null" stands for None.

local ONE_PRIORITY = 1099511627776  -- 2^40: room for 2^40 posts per priority

-- A job hash's fields as job_values() reads them: JobRecord's fields but the uuid.
local FIELDS = {'name', 'details', 'book_uuid', 'book_name', 'priority', 'created_on', 'state',
  'last_modified', 'attempts', 'owner', 'fence', 'lease_expires', 'reason', 'sequence',
  'available_at', 'cancel'}
local NAME, DETAILS, PRIORITY, STATE, LAST_MODIFIED, ATTEMPTS, OWNER, FENCE, LEASE, AVAILABLE =
  1, 2, 5, 7, 8, 9, 10, 11, 12, 15
local BOOK_UUID, BOOK_NAME, CREATED_ON, REASON, SEQUENCE, CANCEL = 3, 4, 6, 13, 14, 16

-- Seconds since the epoch: the caller's clock when given (tests), else the server's, so
-- every machine compares leases and delays against one clock.
local function now_from(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function fmt(x)
  return string.format('%.6f', x)
end

-- Cheap checks of the values the scripts compute with. Legato writes integers as plain digits
-- and the two live states as these exact strings; times are 'null' or a number.
local function is_int(value)
  return value ~= false and value ~= nil and string.find(value, '^%-?%d+$') ~= nil
end

local function is_state(value)
  return value == '"UNCLAIMED"' or value == '"CLAIMED"'
end

local function is_time(value)
  return value == 'null' or (value ~= false and value ~= nil and tonumber(value) ~= nil)
end

local function decodes_to(value, kind)
  if not value then return false end
  local ok, decoded = pcall(cjson.decode, value)
  return ok and type(decoded) == kind
end

-- Missing, 'null' or one JSON string (a pattern for the common case, the decoder for escapes): what
-- job_json() may splice into its object without anything else slipping in.
local function is_text(value)
  if not value or value == 'null' then return true end
  if value and string.find(value, '^"[^"\\]*"$') then return true end
  return decodes_to(value, 'string')
end

-- Missing, 'null' or a number.
local function is_number(value)
  return not value or is_time(value)
end

-- The job's values in FIELDS order (false where a field is missing, all false when the key does
-- not exist), or nil when the key holds something other than a hash.
local function job_values(key)
  local v = redis.pcall('HMGET', key, unpack(FIELDS))
  if v.err then return nil end
  return v
end

-- True when job_values() describe a job Legato can decode; anything else is garbage to set
-- aside. Checked when a job is taken (the client decodes what it receives, and sets aside
-- whatever it cannot); the other steps check only the fields they use.
local function is_valid(v)
  if not v then return false end
  local priority = is_int(v[PRIORITY]) and tonumber(v[PRIORITY])
  return priority and priority >= -2 and priority <= 2 and is_state(v[STATE])
    and is_int(v[FENCE]) and is_int(v[ATTEMPTS]) and is_time(v[LEASE])
    and is_time(v[AVAILABLE]) and decodes_to(v[NAME], 'string')
    and decodes_to(v[DETAILS], 'table') and is_text(v[BOOK_UUID]) and is_text(v[BOOK_NAME])
    and is_text(v[REASON]) and is_number(v[CREATED_ON]) and is_number(v[SEQUENCE])
    and is_text(v[CANCEL])
end

-- True when the key is a hash with a state: enough to move the job between indexes (it is
-- validated when taken, and set aside then if it is garbage).
local function holds_job(key)
  return redis.pcall('HEXISTS', key, 'state') == 1
end

-- Move a job that cannot be decoded out of every work index into the "bad" set (kept, never
-- deleted, still listed by iteration which warns about it).
local function set_aside(k, uuid)
  local score = redis.call('ZSCORE', k.jobs, uuid) or 0
  redis.call('ZREM', k.ready, uuid)
  redis.call('ZREM', k.delayed, uuid)
  redis.call('ZREM', k.claimed, uuid)
  redis.call('ZADD', k.bad, score, uuid)
  redis.log(redis.LOG_WARNING, 'legato: set aside undecodable job ' .. uuid)
end

-- The live claim's owner (JSON) or nil; `state` and `lease` have passed is_state/is_time.
local function live_owner(state, owner, lease, now)
  if state == '"CLAIMED"' and lease ~= 'null' and tonumber(lease) > now then
    return owner
  end
  return nil
end

-- nil when `who` (JSON) holds the live claim with `fence` ('' = any); else a refusal naming the
-- live owner (JSON) and the job's current fence. Reads only the claim's fields: the rest of the
-- job was validated when it was taken.
local function check_owner(key, who, fence, now)
  local h = redis.pcall('HMGET', key, 'state', 'owner', 'lease_expires', 'fence')
  if h.err then return {'BAD'} end
  if not h[1] and redis.call('EXISTS', key) == 0 then return {'NOTFOUND'} end
  if not (is_state(h[1]) and is_time(h[3]) and is_int(h[4])) then return {'BAD'} end
  local owner = live_owner(h[1], h[2], h[3], now)
  if owner ~= who then return {'NOTOWNER', owner or 'null', h[4]} end
  if fence ~= '' and tonumber(h[4]) ~= tonumber(fence) then
    return {'NOTOWNER', owner, h[4]}
  end
  return nil
end

-- The job as one JSON object made of its stored JSON values: the client decodes it in one call
-- (a reply of 30-odd items, each decoded apart, costs several times more). A value that is not
-- JSON makes the whole object undecodable, which the client handles like any undecodable job.
local function job_json(v)
  local parts = {}
  for i, name in ipairs(FIELDS) do
    if v[i] then parts[#parts + 1] = '"' .. name .. '":' .. v[i] end
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- Give the job (is_valid values `v`) to `who` for `ttl` seconds: new fence, one more attempt.
-- Returns {'OK', uuid, <the job as JSON>}.
local function take(k, uuid, key, v, who, ttl, now)
  local lease = now + ttl
  v[STATE], v[OWNER], v[LEASE], v[AVAILABLE] = '"CLAIMED"', who, fmt(lease), 'null'
  v[FENCE] = string.format('%d', tonumber(v[FENCE]) + 1)
  v[ATTEMPTS] = string.format('%d', tonumber(v[ATTEMPTS]) + 1)
  v[LAST_MODIFIED] = fmt(now)
  redis.call('ZREM', k.ready, uuid)
  redis.call('ZREM', k.delayed, uuid)
  redis.call('ZADD', k.claimed, lease, uuid)
  redis.call('HSET', key, 'state', v[STATE], 'owner', who, 'fence', v[FENCE],
    'attempts', v[ATTEMPTS], 'lease_expires', v[LEASE], 'last_modified', v[LAST_MODIFIED],
    'available_at', 'null')
  return {'OK', uuid, job_json(v)}
end

-- Bounded housekeeping: due delayed jobs and expired claims go back to "ready".
local function promote(k, now, limit)
  local due = redis.call('ZRANGEBYSCORE', k.delayed, '-inf', now, 'LIMIT', 0, limit)
  for _, uuid in ipairs(due) do
    local key = k.prefix .. 'job:' .. uuid
    local score = redis.call('ZSCORE', k.jobs, uuid)
    redis.call('ZREM', k.delayed, uuid)
    if score and holds_job(key) then
      redis.call('HSET', key, 'available_at', 'null')
      redis.call('ZADD', k.ready, score, uuid)
    else
      set_aside(k, uuid)
    end
  end
  local expired = redis.call('ZRANGEBYSCORE', k.claimed, '-inf', now, 'LIMIT', 0, limit)
  for _, uuid in ipairs(expired) do
    local key = k.prefix .. 'job:' .. uuid
    local score = redis.call('ZSCORE', k.jobs, uuid)
    redis.call('ZREM', k.claimed, uuid)
    if score and holds_job(key) then
      redis.call('HSET', key, 'state', '"UNCLAIMED"', 'owner', 'null', 'lease_expires', 'null')
      redis.call('ZADD', k.ready, score, uuid)
    else
      set_aside(k, uuid)
    end
  end
end

-- The channel waiters for one job's completion listen on (consume and trash publish there, not
-- on the board's main channel, so that removals never wake conductors waiting for work).
local function removal_channel(channel, uuid)
  return channel .. ':removed:' .. uuid
end

-- Every script gets the same index keys, in this order.
local k = {jobs = KEYS[1], ready = KEYS[2], delayed = KEYS[3], claimed = KEYS[4],
  bad = KEYS[5], seq = KEYS[6], trash = KEYS[7], entities = KEYS[8], expiry = KEYS[9],
  prefix = ARGV[1]}
local now = now_from(ARGV[2])
local channel = ARGV[3]

-- The board's data epoch: the client passes the one it knows as the last argument (taken off
-- here, so every script's own arguments keep their places) and KEYS[10] holds the server's.
-- When they differ, or the key is gone (a server that persists nothing restarted, or the keys
-- were deleted), the script does nothing and answers {'LOST', <the server's epoch or ''>}: a
-- board never mistakes a server that lost its jobs for an empty board.
local EPOCH = table.remove(ARGV)
local server_epoch = redis.call('GET', KEYS[10])
if server_epoch ~= EPOCH then return {'LOST', server_epoch or ''} end

-- Finish a claimed job: it leaves the board. `who` is JSON, `fence` '' for any.
-- Returns {'OK'} or a check_owner refusal.
local function consume(uuid, who, fence)
  local key = k.prefix .. 'job:' .. uuid
  local refused = check_owner(key, who, fence, now)
  if refused then return refused end
  redis.call('DEL', key)
  for _, index in ipairs({k.jobs, k.ready, k.delayed, k.claimed}) do
    redis.call('ZREM', index, uuid)
  end
  redis.call('PUBLISH', removal_channel(channel, uuid), 'removed ' .. uuid)
  return {'OK'}
end

-- Give up `who`'s claim (`fence` '' for any): the job is claimable again after `delay` seconds,
-- at once when 0, in its old place in claim order (its score in "jobs"); waiters are woken.
-- `reason` (JSON) replaces the job's, unless nil. With `uncount` the claim is taken back from
-- `attempts` (never below 0). Returns {'OK', available_at (JSON)} or a check_owner refusal.
local function unclaim(uuid, who, fence, delay, reason, uncount)
  local key = k.prefix .. 'job:' .. uuid
  local refused = check_owner(key, who, fence, now)
  if refused then return refused end
  local available = 'null'
  redis.call('ZREM', k.claimed, uuid)
  if delay > 0 then
    available = fmt(now + delay)
    redis.call('ZADD', k.delayed, now + delay, uuid)
  else
    redis.call('ZADD', k.ready, redis.call('ZSCORE', k.jobs, uuid) or 0, uuid)
  end
  local fields = {'state', '"UNCLAIMED"', 'owner', 'null', 'lease_expires', 'null',
    'available_at', available, 'last_modified', fmt(now)}
  if reason ~= nil then
    fields[#fields + 1] = 'reason'
    fields[#fields + 1] = reason
  end
  if uncount then
    local attempts = redis.call('HGET', key, 'attempts')
    if is_int(attempts) then  -- garbage stays as it is, to be set aside when next taken
      fields[#fields + 1] = 'attempts'
      fields[#fields + 1] = string.format('%d', math.max(tonumber(attempts) - 1, 0))
    end
  end
  redis.call('HSET', key, unpack(fields))
  redis.call('PUBLISH', channel, (uncount and 'released ' or 'abandoned ') .. uuid)
  return {'OK', available}
end

-- Claim the first ready job for `who` (JSON). Work is bounded: at most `limit` delayed/expired
-- jobs are promoted and at most `limit` undecodable entries set aside per call ('AGAIN' asks
-- the caller to call once more). Returns take()'s reply, {'EMPTY'} or {'AGAIN'}.
local function claim_next(who, ttl, limit)
  promote(k, now, limit)
  for _ = 1, limit do
    local first = redis.call('ZRANGE', k.ready, 0, 0)
    if #first == 0 then return {'EMPTY'} end
    local uuid = first[1]
    local key = k.prefix .. 'job:' .. uuid
    local v = job_values(key)
    if not is_valid(v) then
      set_aside(k, uuid)
    elseif live_owner(v[STATE], v[OWNER], v[LEASE], now) then
      redis.call('ZREM', k.ready, uuid)  -- stale index entry: the claimed set has it
    else
      return take(k, uuid, key, v, who, ttl, now)
    end
  end
  return {'AGAIN'}
end
