-- One admission, atomically; see ADMIT in mod.rs for KEYS, ARGV and the reply.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local est = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local id = ARGV[6]
local spent, held = 0, 0
local refresh = 0
if budget >= 0 then
  local s = redis.call('GET', KEYS[2])
  if not s then return {-1} end
  spent = tonumber(s)
  -- Past its freshness the spend is reloaded from the ledger by one caller (told so by
  -- the last reply field) while everyone goes on with the current value.
  if redis.call('SET', KEYS[6], '1', 'NX', 'EX', 30) then refresh = 1 end
  local stale = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[7]), 'LIMIT', 0, 100)
  for _, m in ipairs(stale) do
    release(m, math.huge)
    redis.call('ZREM', KEYS[4], m)
  end
  held = tonumber(redis.call('GET', KEYS[5]) or '0')
  -- limits::crosses_budget: the holds in flight and this one must fit what is left.
  if spent + held >= budget or (held > 0 and spent + held + cost > budget) then
    return {3, 0, 0, 0, 0, tostring(spent), string.format('%.17g', held), 0, '0', 0, 0, refresh}
  end
end
local sec = math.floor(now / 1000)
local lo = sec
local req_used, tok_used = 0, 0
if rpm > 0 or tpm > 0 then
  lo, sec = advance(KEYS[1], sec)
  local v = redis.call('HMGET', KEYS[1], 'rs', 'ts')
  req_used = tonumber(v[1] or '0')
  tok_used = tonumber(v[2] or '0')
end
local function reset(used)
  if used <= 0 then return 0 end
  return math.max(0, (lo + 61) * 1000 - now)
end
if rpm > 0 and req_used >= rpm then
  return {1, req_used, reset(req_used), tok_used, reset(tok_used), tostring(spent), 0, 0, '0', 0, 0, refresh}
end
local est_min = tonumber(ARGV[9])
if tpm > 0 and tok_used + est > tpm and tok_used + est_min <= tpm then
  -- limits::tpm_hold: no maximum of its own, it holds what is left of the window.
  est = math.max(est_min, tpm - tok_used)
end
if tpm > 0 and tok_used + est > tpm then
  return {2, req_used, reset(req_used), tok_used, reset(tok_used), tostring(spent), 0, 0, '0', 0, 0, refresh}
end
local lr, lt, lc = 0, 0, 0
if ARGV[8] == '1' then
  if rpm > 0 then lr = math.min(256, math.floor((rpm - req_used) / 64)) end
  if tpm > 0 then lt = math.floor((tpm - tok_used - est) / 64) end
  if budget >= 0 then lc = (budget - spent - held) / 64 - cost end
  if (rpm > 0 and lr < 1) or (tpm > 0 and lt < est) or (budget >= 0 and lc < cost) then
    lr, lt, lc = 0, 0, 0
  end
  if lt < 0 then lt = 0 end
  if lc < 0 then lc = 0 end
end
if rpm > 0 then
  redis.call('HINCRBY', KEYS[1], 'r' .. sec, 1 + lr)
  redis.call('HINCRBY', KEYS[1], 'rs', 1 + lr)
  req_used = req_used + 1 + lr
end
if tpm > 0 then
  redis.call('HINCRBY', KEYS[1], 't' .. sec, est + lt)
  redis.call('HINCRBY', KEYS[1], 'ts', est + lt)
  tok_used = tok_used + est + lt
end
if rpm > 0 or tpm > 0 then redis.call('EXPIRE', KEYS[1], 125) end
if budget >= 0 and cost + lc > 0 then
  redis.call('HINCRBYFLOAT', KEYS[3], id, cost + lc)
  redis.call('ZADD', KEYS[4], now, id)
  redis.call('INCRBYFLOAT', KEYS[5], cost + lc)
end
return {0, req_used, reset(req_used), tok_used, reset(tok_used), tostring(spent), lr, lt,
  string.format('%.17g', lc), sec, now % 1000, refresh, est}
