-- Scripts over one deployment's hash and holds. Loaded by fleet/store/deployments.py; each
-- function below is registered as its own script (split on the "--@" markers).
--
-- Deployment hash fields: request_id app version status_raw rank unknown_status sockets usage
-- usage_rank usage_by fqdn public_ip ports location tags fleet policy intent error_detail
-- created_at ready_at last_heard empty_since draining draining_at stop_requested_at terminal_at
-- rank: -1 unknown, 0..8 = fleet.models.Status. Empty sockets/usage = unknown.
-- Holds hash: session id -> "size|expiry_ms|state", state r (reservation) or s (session).

--@ holds_summary
-- (shared helper; textually prepended to the scripts that need it)
local function holds_summary(holds, now_ms)
  local committed, reserved, count = 0, 0, 0
  local flat = redis.call('HGETALL', holds)
  for i = 1, #flat, 2 do
    local size, exp, state = string.match(flat[i + 1], '^(%d+)|(%d+)|(%a)$')
    size = tonumber(size) or 0
    exp = tonumber(exp) or 0
    if state == 'r' and exp <= now_ms then
      redis.call('HDEL', holds, flat[i])
    elseif state == 's' then
      committed = committed + size
      count = count + 1
    else
      reserved = reserved + size
      count = count + 1
    end
  end
  return committed, reserved, count
end

local function refresh_empty(dep, holds, now_ms)
  -- empty_since: READY, usage known 0, no hold. Anything else clears it.
  local rank = tonumber(redis.call('HGET', dep, 'rank') or '-1')
  local usage = redis.call('HGET', dep, 'usage')
  local _, _, count = holds_summary(holds, now_ms)
  if rank == 5 and usage == '0' and count == 0 then
    if not redis.call('HGET', dep, 'empty_since') then
      redis.call('HSET', dep, 'empty_since', tostring(now_ms / 1000))
    end
  else
    redis.call('HDEL', dep, 'empty_since')
  end
end

--@ apply_reports
-- KEYS: live, events, then per report: dep, holds, app version index ('' when none)
-- ARGV: one report JSON per report, in the same order
-- -> per report {transition, previous rank, created, usage_changed}, or an error reply for a
--    report whose own part failed (the others stand; each report is applied on its own).
-- A report: {request_id, rank (nil = no status, -1 = unknown string), status_raw, source, now,
--            facts = {field = string}, snapshot = {field = string}, usage = string|nil}
-- "facts" and "snapshot" fields are written when the report is fresh (a transition, or a poll of
-- the platform: source ~= 'webhook') and otherwise only fill an empty field, so the facts a
-- deployment keeps for life end the same in any delivery order.
-- Usage: a fresh report always writes it. Any other webhook writes it only when its (status rank,
-- usage) is above the (usage_rank, usage) of the webhook that wrote it last, and never over a
-- poll of the same or a higher rank. Webhooks carry no time, so among unordered webhooks of one
-- status the highest usage wins (never under-counts: no wrong scale-in, no overbooking), in any
-- delivery order; a poll stays authoritative until a transition or the next poll.
-- ready_at: when a READY report was first heard (a READY arriving after TERMINATED still sets it).
-- The app version index (given when the report names both) lists the deployment unless it is
-- terminal; it moves with the state, in the same script.
-- Cost: a report reads the fields it needs in one HMGET and writes in one HSET (per-field calls
-- made this script the larger part of Redis's CPU under callback load).
local live, events = KEYS[1], KEYS[2]

local function apply_one(dep, holds, app_index, r)
  local now = tonumber(r.now)
  local now_ms = math.floor(now * 1000)
  local names = {'rank', 'ready_at', 'usage', 'usage_rank', 'usage_by', 'empty_since', 'request_id'}
  if type(r.facts) == 'table' then for field in pairs(r.facts) do names[#names + 1] = field end end
  if type(r.snapshot) == 'table' then for field in pairs(r.snapshot) do names[#names + 1] = field end end
  local got = redis.call('HMGET', dep, unpack(names))
  local h, writes, dels = {}, {}, {}  -- h: the hash as this report leaves it (false = absent)
  for i, name in ipairs(names) do h[name] = got[i] end
  local function set(field, value) h[field] = value; writes[field] = value; dels[field] = nil end
  local function del(field)
    if h[field] then h[field] = false; writes[field] = nil; dels[field] = true end
  end

  local created = 0
  if redis.call('EXISTS', dep) == 0 then
    set('request_id', r.request_id); set('rank', '-1'); set('draining', '0')
    set('created_at', tostring(now))
    redis.call('SADD', live, r.request_id)
    created = 1
  end
  local cur = tonumber(h.rank or '-1')
  local new = tonumber(r.rank or '-99')
  local transition = 0
  if new ~= -99 then
    if new >= 0 then
      if cur < 0 or (cur < 7 and new > cur) then
        set('rank', tostring(new)); set('status_raw', r.status_raw)
        transition = 1
        if new >= 7 then
          redis.call('SREM', live, r.request_id)
          set('terminal_at', tostring(now))
          del('empty_since')
        end
      end
    else
      set('unknown_status', r.status_raw)
      if cur < 0 then set('status_raw', r.status_raw) end
    end
  end
  if new == 5 and not h.ready_at then set('ready_at', tostring(now)) end
  local stale = (new ~= -99 and new >= 0 and new < cur)
  local fresh = (transition == 1) or (r.source ~= 'webhook' and not stale)
  if type(r.facts) == 'table' then
    for field, value in pairs(r.facts) do
      local old = h[field]
      if not old or old == '' or (fresh and value ~= '') then set(field, value) end
    end
  end
  if type(r.snapshot) == 'table' then
    for field, value in pairs(r.snapshot) do
      local old = h[field]
      if fresh or not old or old == '' then set(field, value) end
    end
  end
  local usage_changed = 0
  if r.usage ~= nil and r.usage ~= cjson.null then
    local old = h.usage
    local at = math.max(new, -1)  -- the report's rank; -1 for an unknown status or none
    local write = fresh or not old or old == ''
    if not write and r.source == 'webhook' then
      local ur = tonumber(h.usage_rank or '-1') or -1
      write = at > ur or (at == ur and h.usage_by == 'webhook' and tonumber(r.usage) > (tonumber(old) or -1))
    end
    if write then
      local by = 'webhook'
      if r.source ~= 'webhook' then
        by = r.source
        if fresh then at = tonumber(h.rank or '-1') or -1 end
      end
      if old ~= r.usage then usage_changed = 1 end
      set('usage', r.usage); set('usage_rank', tostring(at)); set('usage_by', by)
    end
  end
  set('last_heard', tostring(now))
  -- empty_since: READY, usage known 0, no hold. Anything else clears it (as refresh_empty).
  local _, _, count = holds_summary(holds, now_ms)
  if tonumber(h.rank or '-1') == 5 and h.usage == '0' and count == 0 then
    if not h.empty_since then set('empty_since', tostring(now_ms / 1000)) end
  else
    del('empty_since')
  end

  local flat = {}
  for field, value in pairs(writes) do flat[#flat + 1] = field; flat[#flat + 1] = value end
  redis.call('HSET', dep, unpack(flat))  -- never empty: last_heard is always written
  local gone = {}
  for field in pairs(dels) do gone[#gone + 1] = field end
  if #gone > 0 then redis.call('HDEL', dep, unpack(gone)) end
  if app_index ~= '' and tonumber(h.rank or '-1') < 7 then
    redis.call('SADD', app_index, r.request_id)
  end
  if transition == 1 then
    redis.call('XADD', events, 'MAXLEN', '~', '10000', '*', 'kind', 'deployment',
               'request_id', r.request_id, 'rank', tostring(new), 'source', r.source)
  end
  return {transition, cur, created, usage_changed}
end

local out = {}
for i = 1, #ARGV do
  local base = 3 * i
  local ok, res = pcall(function()
    return apply_one(KEYS[base], KEYS[base + 1], KEYS[base + 2], cjson.decode(ARGV[i]))
  end)
  if ok then out[i] = res else out[i] = redis.error_reply(tostring(res)) end
end
return out

--@ reserve
-- KEYS: dep, holds   ARGV: session_id, size, now_ms, ttl_ms
-- -> {1, 'ok'|'exists', free_after} or {0, reason}
local dep, holds = KEYS[1], KEYS[2]
local sid, size, now_ms, ttl_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('HGET', dep, 'rank') ~= '5' then return {0, 'not_ready'} end
if redis.call('HGET', dep, 'draining') == '1' then return {0, 'draining'} end
local sockets = tonumber(redis.call('HGET', dep, 'sockets') or '')
local usage = tonumber(redis.call('HGET', dep, 'usage') or '')
if not sockets or not usage then return {0, 'unknown'} end
local committed, reserved = holds_summary(holds, now_ms)
local used = math.max(usage, committed) + reserved
local cur = redis.call('HGET', holds, sid)
if cur then
  -- Held already (a retry, or a session asking again): fine as it is, or grown only if it fits.
  local old, exp, state = string.match(cur, '^(%d+)|(%d+)|(%a)$')
  old = tonumber(old) or 0
  if size <= old then return {1, 'exists', 0} end
  if used + (size - old) > sockets then return {0, 'full'} end
  redis.call('HSET', holds, sid, tostring(size) .. '|' .. exp .. '|' .. state)
  return {1, 'exists', sockets - used - (size - old)}
end
if used + size > sockets then return {0, 'full'} end
redis.call('HSET', holds, sid, tostring(size) .. '|' .. tostring(now_ms + ttl_ms) .. '|r')
redis.call('HDEL', dep, 'empty_since')
return {1, 'ok', sockets - used - size}

--@ confirm
-- KEYS: dep, holds   ARGV: session_id, size   -> 1 (the hold is now a session)
local dep, holds = KEYS[1], KEYS[2]
redis.call('HSET', holds, ARGV[1], ARGV[2] .. '|0|s')
redis.call('HDEL', dep, 'empty_since')
return 1

--@ confirm_held
-- KEYS: dep, holds   ARGV: session_id, size, now_ms   -> 1 confirmed, 0 the reservation is gone
-- (allocator) A reservation becomes a session only while it is live: an expired one may have been
-- let to another session meanwhile, and confirming it then would overbook.
local dep, holds = KEYS[1], KEYS[2]
local cur = redis.call('HGET', holds, ARGV[1])
if not cur then return 0 end
local old, exp, state = string.match(cur, '^(%d+)|(%d+)|(%a)$')
if state == 'r' and (tonumber(exp) or 0) <= tonumber(ARGV[3]) then
  redis.call('HDEL', holds, ARGV[1])
  return 0
end
local grow = tonumber(ARGV[2]) - (tonumber(old) or 0)
if grow > 0 then
  -- Confirming more than was held would take sockets nobody checked: only if they are free.
  local sockets = tonumber(redis.call('HGET', dep, 'sockets') or '')
  local usage = tonumber(redis.call('HGET', dep, 'usage') or '')
  if not sockets or not usage then return 0 end
  local committed, reserved = holds_summary(holds, tonumber(ARGV[3]))
  if math.max(usage, committed) + reserved + grow > sockets then return 0 end
end
redis.call('HSET', holds, ARGV[1], ARGV[2] .. '|0|s')
redis.call('HDEL', dep, 'empty_since')
return 1

--@ release
-- KEYS: dep, holds   ARGV: session_id, now_ms   -> 1 if a hold was removed
local dep, holds = KEYS[1], KEYS[2]
local removed = redis.call('HDEL', holds, ARGV[1])
if redis.call('EXISTS', dep) == 1 then
  -- The platform's usage we hold still counts this session until the next report: mark the
  -- deployment so the scaler polls it soon (fresh absolute usage; never a local decrement).
  if removed == 1 then redis.call('HSET', dep, 'released_at', tostring(tonumber(ARGV[2]) / 1000)) end
  refresh_empty(dep, holds, tonumber(ARGV[2]))
end
return removed

--@ resize
-- KEYS: dep, holds   ARGV: session_id, new_size, now_ms  -> {1} or {0, reason}
-- Changes a confirmed session's size (users added or removed) without overbooking.
local dep, holds = KEYS[1], KEYS[2]
local sid, size, now_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cur = redis.call('HGET', holds, sid)
if not cur then return {0, 'no_session'} end
local old = tonumber(string.match(cur, '^(%d+)|')) or 0
if size > old then
  local sockets = tonumber(redis.call('HGET', dep, 'sockets') or '')
  local usage = tonumber(redis.call('HGET', dep, 'usage') or '')
  if not sockets or not usage then return {0, 'unknown'} end
  local committed, reserved = holds_summary(holds, now_ms)
  if math.max(usage, committed) + reserved + (size - old) > sockets then return {0, 'full'} end
end
redis.call('HSET', holds, sid, tostring(size) .. '|0|s')
return {1}

--@ try_drain
-- KEYS: dep, holds   ARGV: now_ms, allow_starting (1: a stuck, never-READY deployment)
-- Marks the deployment draining only if nothing is or may soon be on it. Atomic with reserve:
-- a placement and a stop can never both win.
local dep, holds = KEYS[1], KEYS[2]
local now_ms, allow_starting = tonumber(ARGV[1]), ARGV[2] == '1'
if redis.call('EXISTS', dep) == 0 then return {0, 'unknown_deployment'} end
if redis.call('HGET', dep, 'draining') == '1' then return {0, 'already_draining'} end
local rank = tonumber(redis.call('HGET', dep, 'rank') or '-1')
if rank >= 7 then return {0, 'terminal'} end
if rank ~= 5 and not (allow_starting and rank >= 0 and rank < 5) then return {0, 'not_ready'} end
local usage = redis.call('HGET', dep, 'usage')
if usage == false or usage == '' then return {0, 'usage_unknown'} end
if tonumber(usage) ~= 0 then return {0, 'in_use'} end
local _, _, count = holds_summary(holds, now_ms)
if count > 0 then return {0, 'held'} end
redis.call('HSET', dep, 'draining', '1', 'draining_at', tostring(now_ms / 1000))
return {1, 'ok'}

--@ undrain
-- KEYS: dep   ARGV: -   -> 1. A stop that the platform refused for good returns the deployment.
redis.call('HSET', KEYS[1], 'draining', '0')
redis.call('HDEL', KEYS[1], 'draining_at', 'stop_requested_at')
return 1
