-- Settles and lease returns, atomically; see FINISH in mod.rs for KEYS and ARGV.
if ARGV[1] == 's' then
  if ARGV[8] == '1' then
    local up = tonumber(ARGV[2])
    local down = tonumber(ARGV[3])
    local asec = tonumber(ARGV[4])
    local lo = tonumber(redis.call('HGET', KEYS[1], 'lo') or '-1')
    if lo >= 0 and (up > 0 or down > 0) then
      if asec >= lo and redis.call('HEXISTS', KEYS[1], 't' .. asec) == 1 then
        -- The correction goes where the estimate was counted, and leaves with it.
        redis.call('HINCRBY', KEYS[1], 't' .. asec, up - down)
        redis.call('HINCRBY', KEYS[1], 'ts', up - down)
      elseif up > 0 then
        -- The estimate already left the window: only the excess still counts.
        local t = redis.call('TIME')
        local _, sec = advance(KEYS[1], tonumber(t[1]))
        redis.call('HINCRBY', KEYS[1], 't' .. sec, up)
        redis.call('HINCRBY', KEYS[1], 'ts', up)
      end
    end
  end
  if ARGV[9] == '1' then
    release(ARGV[6], tonumber(ARGV[7]))
    local cost = tonumber(ARGV[5])
    if cost > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
      redis.call('INCRBYFLOAT', KEYS[2], ARGV[5])
    end
  end
  return 0
end
local lo = tonumber(redis.call('HGET', KEYS[1], 'lo') or '-1')
local sec = tonumber(ARGV[2])
if lo >= 0 and sec >= lo then
  local r = tonumber(ARGV[3])
  local t = tonumber(ARGV[4])
  if r > 0 and redis.call('HEXISTS', KEYS[1], 'r' .. sec) == 1 then
    redis.call('HINCRBY', KEYS[1], 'r' .. sec, -r)
    redis.call('HINCRBY', KEYS[1], 'rs', -r)
  end
  if t > 0 and redis.call('HEXISTS', KEYS[1], 't' .. sec) == 1 then
    redis.call('HINCRBY', KEYS[1], 't' .. sec, -t)
    redis.call('HINCRBY', KEYS[1], 'ts', -t)
  end
end
release(ARGV[5], tonumber(ARGV[6]))
return 0
