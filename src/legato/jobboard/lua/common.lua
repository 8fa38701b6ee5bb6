-- Helpers shared by every Legato jobboard script (prepended to each script by redis.py).
-- Job hashes hold JSON-encoded values; "null" stands for None.

local ONE_PRIORITY = 1099511627776  -- 2^40: room for 2^40 posts per priority

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

local function decodes(value, kind)
  if not value then return false end
  local ok, decoded = pcall(cjson.decode, value)
  if not ok then return false end
  if kind == 'table' then return type(decoded) == 'table' end
  if kind == 'int' then
    return type(decoded) == 'number' and decoded == math.floor(decoded)
  end
  if kind == 'string' then return type(decoded) == 'string' end
  if kind == 'priority' then
    return type(decoded) == 'number' and decoded == math.floor(decoded)
      and decoded >= -2 and decoded <= 2
  end
  if kind == 'state' then return decoded == 'UNCLAIMED' or decoded == 'CLAIMED' end
  return true
end

-- True when the key is a job hash Legato can decode; anything else is garbage to set aside.
local function is_valid(key)
  if redis.call('TYPE', key)['ok'] ~= 'hash' then return false end
  local v = redis.call('HMGET', key, 'name', 'details', 'priority', 'state', 'fence', 'attempts')
  return decodes(v[1], 'string') and decodes(v[2], 'table') and decodes(v[3], 'priority')
    and decodes(v[4], 'state') and decodes(v[5], 'int') and decodes(v[6], 'int')
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

-- The live claim's owner (JSON) or nil.
local function live_owner(key, now)
  local h = redis.call('HMGET', key, 'state', 'owner', 'lease_expires')
  if h[1] == '"CLAIMED"' and h[3] and h[3] ~= 'null' and tonumber(h[3]) > now then
    return h[2]
  end
  return nil
end

-- nil when `who` (JSON) holds the live claim with `fence` ('' = any); else an error reply.
local function check_owner(key, who, fence, now)
  if redis.call('EXISTS', key) == 0 then return {'NOTFOUND'} end
  if not is_valid(key) then return {'BAD'} end
  local owner = live_owner(key, now)
  if owner ~= who then return {'NOTOWNER', owner or 'null'} end
  if fence ~= '' and tonumber(redis.call('HGET', key, 'fence')) ~= tonumber(fence) then
    return {'NOTOWNER', owner}
  end
  return nil
end

-- Give the job to `who` for `ttl` seconds: new fence, one more attempt.
-- Returns {'OK', uuid, <JSON array field, value, ...>}: one bulk string parses far faster on the
-- client than a reply of 30-odd items.
local function take(k, uuid, key, who, ttl, now)
  local h = redis.call('HMGET', key, 'fence', 'attempts')
  local lease = now + ttl
  redis.call('ZREM', k.ready, uuid)
  redis.call('ZREM', k.delayed, uuid)
  redis.call('ZADD', k.claimed, lease, uuid)
  redis.call('HSET', key, 'state', '"CLAIMED"', 'owner', who,
    'fence', string.format('%d', tonumber(h[1]) + 1),
    'attempts', string.format('%d', tonumber(h[2]) + 1),
    'lease_expires', fmt(lease), 'last_modified', fmt(now), 'available_at', 'null')
  return {'OK', uuid, cjson.encode(redis.call('HGETALL', key))}
end

-- Bounded housekeeping: due delayed jobs and expired claims go back to "ready".
local function promote(k, now, limit)
  local due = redis.call('ZRANGEBYSCORE', k.delayed, '-inf', now, 'LIMIT', 0, limit)
  for _, uuid in ipairs(due) do
    local key = k.prefix .. 'job:' .. uuid
    local score = redis.call('ZSCORE', k.jobs, uuid)
    redis.call('ZREM', k.delayed, uuid)
    if score and is_valid(key) then
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
    if score and is_valid(key) then
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
