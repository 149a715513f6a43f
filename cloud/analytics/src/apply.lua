-- Applies one event to its order's record and to the live counters, once.
-- See counters.rs for the key names.
--
-- KEYS[1]  the event's dedup key      KEYS[2]  the order's record
-- ARGV[1]  op: created | cancelled | refunded | paid | payment_failed | completed
-- ARGV[2]  dedup TTL (s)   ARGV[3] record and hour TTL (s)   ARGV[4] day TTL (s)
-- ARGV[5]  key prefix      ARGV[6] the op's value (base JSON, amount, time)
-- ARGV[7]  the arrival hour (YYYYMMDDHH)
-- ARGV[8]  created only: the order's whole base (JSON), kept for the facts
--          and never decoded here (`b`, the part the counters need, is small)
--
-- The counters an order contributes follow from its record alone (base,
-- cancelled, refunded), so each event applies the difference between the
-- order's contribution after and before it: events may arrive in any
-- order (a void before its sale) and the totals come out the same.
-- Returns {1 if applied now, 0 if already applied, the record as HGETALL}.
local rec = KEYS[2]
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  return {0, redis.call('HGETALL', rec)}
end
local op, prefix = ARGV[1], ARGV[5]

local function contribution(b, cancelled, refunded)
  local m = {}
  if not b then return m end
  local cur, total = b.cur, b.total
  local gross, net, void, refund = 'gross:' .. cur, 'net:' .. cur, 'void:' .. cur, 'refund:' .. cur
  local tender_keys, cat_gross, cat_net = {}, {}, {}
  for i, t in ipairs(b.tenders) do tender_keys[i] = 'tender:' .. t[1] .. ':' .. cur end
  for i, c in ipairs(b.cats) do
    cat_gross[i] = 'cat:' .. c[1] .. '|gross:' .. cur
    cat_net[i] = 'cat:' .. c[1] .. '|net:' .. cur
  end
  for _, p in ipairs(b.scopes) do
    m[p .. 'orders'] = 1
    m[p .. gross] = total
    if refunded ~= 0 then m[p .. refund] = refunded end
    if b.late then m[p .. 'late'] = 1 end
    for i, t in ipairs(b.tenders) do
      local k = p .. tender_keys[i]
      m[k] = (m[k] or 0) + t[2]
    end
    for i, c in ipairs(b.cats) do m[p .. cat_gross[i]] = c[2] end
    if cancelled then
      m[p .. 'voids'] = 1
      m[p .. void] = total
    else
      m[p .. 'net_orders'] = 1
      m[p .. net] = total - refunded
      for i, c in ipairs(b.cats) do m[p .. cat_net[i]] = c[2] end
    end
  end
  return m
end

local st = redis.call('HMGET', rec, 'b', 'x', 'rfd')
local b = st[1] and cjson.decode(st[1]) or nil
local cancelled = st[2] == '1'
local refunded = tonumber(st[3] or '0')
local before = contribution(b, cancelled, refunded)
local fresh_sale = false

if op == 'created' then
  if not b then
    redis.call('HSET', rec, 'b', ARGV[6], 'f', ARGV[8])
    b = cjson.decode(ARGV[6])
    fresh_sale = true
  end
elseif op == 'cancelled' then
  cancelled = true
  redis.call('HSET', rec, 'x', '1')
elseif op == 'refunded' then
  refunded = refunded + tonumber(ARGV[6])
  redis.call('HSET', rec, 'rfd', refunded)
elseif op == 'paid' then
  redis.call('HSET', rec, 'pay', 'captured')
elseif op == 'payment_failed' then
  redis.call('HSET', rec, 'pay', 'failed')
elseif op == 'completed' then
  redis.call('HSET', rec, 'done', ARGV[6])
else
  return redis.error_reply('unknown op ' .. op)
end

if b then
  local after = contribution(b, cancelled, refunded)
  local hk, dk = prefix .. 'h:' .. b.h, prefix .. 'd:' .. b.d
  local changed = false
  local function apply(k, d)
    if d ~= 0 then
      redis.call('HINCRBY', hk, k, d)
      redis.call('HINCRBY', dk, k, d)
      changed = true
    end
  end
  for k, v in pairs(after) do apply(k, v - (before[k] or 0)) end
  for k, v in pairs(before) do if after[k] == nil then apply(k, -v) end end
  if changed then
    redis.call('EXPIRE', hk, ARGV[3])
    redis.call('EXPIRE', dk, ARGV[4])
  end
  if fresh_sale and b.late then
    local ak = prefix .. 'arr:' .. ARGV[7]
    for _, p in ipairs(b.scopes) do redis.call('HINCRBY', ak, p .. 'late', 1) end
    redis.call('EXPIRE', ak, ARGV[3])
  end
end
redis.call('HINCRBY', rec, 'v', 1)
redis.call('EXPIRE', rec, ARGV[3])
return {1, redis.call('HGETALL', rec)}
