-- Shared by admit.lua and finish.lua (prepended to each); see HELPERS in mod.rs.
local function advance(win, sec)
  local lo = tonumber(redis.call('HGET', win, 'lo') or '-1')
  if lo < 0 or sec - lo >= 120 then
    redis.call('DEL', win)
    redis.call('HSET', win, 'lo', sec, 'rs', 0, 'ts', 0)
    redis.call('EXPIRE', win, 125)
    return sec, sec
  end
  if sec < lo then return lo, lo end
  local rs_d, ts_d = 0, 0
  while lo <= sec - 61 do
    local v = redis.call('HMGET', win, 'r' .. lo, 't' .. lo)
    if v[1] then rs_d = rs_d + tonumber(v[1]) end
    if v[2] then ts_d = ts_d + tonumber(v[2]) end
    redis.call('HDEL', win, 'r' .. lo, 't' .. lo)
    lo = lo + 1
  end
  while lo < sec do
    local v = redis.call('HMGET', win, 'r' .. lo, 't' .. lo)
    if v[1] or v[2] then break end
    lo = lo + 1
  end
  redis.call('HSET', win, 'lo', lo)
  if rs_d ~= 0 then redis.call('HINCRBY', win, 'rs', -rs_d) end
  if ts_d ~= 0 then redis.call('HINCRBY', win, 'ts', -ts_d) end
  return lo, sec
end
local function release(id, amount)
  if amount <= 0 then return end
  local a = redis.call('HGET', KEYS[3], id)
  if not a then return end
  a = tonumber(a)
  if amount >= a - 1e-12 then
    amount = a
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
  else
    redis.call('HINCRBYFLOAT', KEYS[3], id, -amount)
  end
  if redis.call('HLEN', KEYS[3]) == 0 then
    redis.call('SET', KEYS[5], '0')
  else
    redis.call('INCRBYFLOAT', KEYS[5], -amount)
  end
end
