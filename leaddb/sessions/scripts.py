"""The Lua scripts of the session store: each is one atomic step on one user's hash tag.

Redis runs a script to the end without interleaving another client's commands, so a session and
its user's index change together or not at all. Every key a script touches shares the hash tag of
``KEYS[1]`` (session keys are built as ``prefix .. digest`` from a prefix in that same tag), so
the scripts run unchanged on Redis Cluster. Scripts read before they write: a refused first write
(out of memory, a clobbered key of the wrong type) leaves nothing half done.

Time comes from the server (``TIME``), the same clock that expires the keys, so the timestamps a
session reports and the moment Redis drops it agree whatever the clients' clocks say. Only
commands of Redis 6.2 are used. A session is a hash of short fields:

``sid`` public id, ``rec`` JSON (user, organization, data, metadata), ``org`` organization id,
``created`` / ``seen`` / ``exp`` / ``abs`` times in ms since the epoch, ``idle`` idle ms.
"""

from __future__ import annotations

from typing import Final

_COMMON: Final = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- An index score: creation time in microseconds (exact in a double until the year 2255), made
-- strictly increasing so that sessions created in the same instant still evict in order.
local function next_score(index)
  local t = redis.call('TIME')
  local score = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) >= score then
    score = tonumber(last[2]) + 1
  end
  return score
end
-- Lua would print a large number as 1.7e+12; '%.0f' keeps every digit of an integral double.
local function int(n)
  return string.format('%.0f', n)
end
-- Slides a live session's expiry to now + idle, never past its absolute deadline.
local function slide(key, now, idle, abs)
  local exp = math.min(now + idle, abs)
  redis.call('HSET', key, 'seen', int(now), 'exp', int(exp))
  redis.call('PEXPIREAT', key, int(exp))
  return exp
end
-- Drops index entries whose session has expired on its own.
local function prune(index, prefix)
  for _, member in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    if redis.call('EXISTS', prefix .. member) == 0 then
      redis.call('ZREM', index, member)
    end
  end
end
-- Keeps a key alive until at least the given deadline (EXPIRE GT is Redis 7).
local function extend(key, now, deadline)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 or now + ttl < deadline then
    redis.call('PEXPIREAT', key, int(deadline))
  end
end
"""

CREATE: Final = (
    _COMMON
    + """
-- KEYS: session, user index. ARGV: digest, sid, rec, org, idle ms, absolute ms, cap, prefix.
local session, index = KEYS[1], KEYS[2]
local digest, prefix = ARGV[1], ARGV[8]
local idle, absolute, cap = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()
prune(index, prefix)
local evicted = 0
while redis.call('ZCARD', index) >= cap do
  local oldest = redis.call('ZPOPMIN', index)
  redis.call('DEL', prefix .. oldest[1])
  evicted = evicted + 1
end
local abs = now + absolute
redis.call('HSET', session, 'sid', ARGV[2], 'rec', ARGV[3], 'org', ARGV[4],
  'created', int(now), 'abs', int(abs), 'idle', int(idle))
slide(session, now, idle, abs)
redis.call('ZADD', index, int(next_score(index)), digest)
extend(index, now, abs)
return evicted
"""
)

SLIDE: Final = (
    _COMMON
    + """
-- get / touch. KEYS: session, user index. ARGV: digest, '1' to return the session.
local session, index = KEYS[1], KEYS[2]
local v = redis.call('HMGET', session, 'abs', 'idle', 'sid', 'rec', 'created')
if not v[1] then
  return false
end
local now = now_ms()
local abs = tonumber(v[1])
if abs <= now then
  -- Expired but not yet collected: it must not come back to life.
  redis.call('DEL', session)
  redis.call('ZREM', index, ARGV[1])
  return false
end
local exp = slide(session, now, tonumber(v[2]), abs)
if ARGV[2] == '1' then
  return {v[3], v[4], v[5], int(now), int(exp), v[1]}
end
return 1
"""
)

ROTATE: Final = (
    _COMMON
    + """
-- KEYS: old session, new session, user index. ARGV: old digest, new digest.
local old, new, index = KEYS[1], KEYS[2], KEYS[3]
local v = redis.call('HMGET', old, 'abs', 'idle', 'created')
if not v[1] then
  return 0
end
local now = now_ms()
local abs = tonumber(v[1])
if abs <= now then
  redis.call('DEL', old)
  redis.call('ZREM', index, ARGV[1])
  return 0
end
-- A 256-bit collision cannot happen; RENAMENX makes sure it could not overwrite a session.
if redis.call('RENAMENX', old, new) == 0 then
  return 0
end
-- The new digest takes the old one's place in the index, so eviction order is unchanged.
local score = redis.call('ZSCORE', index, ARGV[1]) or int(tonumber(v[3]) * 1000)
redis.call('ZREM', index, ARGV[1])
redis.call('ZADD', index, score, ARGV[2])
slide(new, now, tonumber(v[2]), abs)
return 1
"""
)

REVOKE: Final = """
-- KEYS: session, user index. ARGV: digest.
local removed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return removed
"""

REVOKE_USER: Final = """
-- KEYS: user index. ARGV: prefix, organization id ('' for every organization).
-- Returns {sessions revoked, sessions left}.
local index, prefix, org = KEYS[1], ARGV[1], ARGV[2]
local revoked = 0
for _, member in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local key = prefix .. member
  if org == '' or redis.call('HGET', key, 'org') == org then
    revoked = revoked + redis.call('DEL', key)
    redis.call('ZREM', index, member)
  elseif redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', index, member)
  end
end
return {revoked, redis.call('ZCARD', index)}
"""

REVOKE_SESSION_ID: Final = """
-- KEYS: user index. ARGV: prefix, public session id. Returns 1 if it was live.
local index, prefix, sid = KEYS[1], ARGV[1], ARGV[2]
for _, member in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local key = prefix .. member
  local found = redis.call('HGET', key, 'sid')
  if not found then
    redis.call('ZREM', index, member)
  elseif found == sid then
    redis.call('DEL', key)
    redis.call('ZREM', index, member)
    return 1
  end
end
return 0
"""

LIST: Final = """
-- KEYS: user index. ARGV: prefix. Oldest first; prunes entries whose session has expired.
local index, prefix = KEYS[1], ARGV[1]
local sessions = {}
for _, member in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local v = redis.call('HMGET', prefix .. member, 'sid', 'rec', 'created', 'seen', 'exp', 'abs')
  if v[1] then
    sessions[#sessions + 1] = v
  else
    redis.call('ZREM', index, member)
  end
end
return sessions
"""

REGISTER_USER: Final = (
    _COMMON
    + """
-- KEYS: organization index. ARGV: user id, how long (ms) the user's new session may live.
-- Scores are deadlines: a user whose every session is past its absolute deadline drops out.
local index, user = KEYS[1], ARGV[1]
local now = now_ms()
local deadline = now + tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. int(now))
local current = redis.call('ZSCORE', index, user)
if not current or tonumber(current) < deadline then
  redis.call('ZADD', index, int(deadline), user)
end
extend(index, now, deadline)
return 1
"""
)
