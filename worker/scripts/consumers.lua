-- consumers.lua: removes from the consumer group the consumers of workers
-- that are gone (killed ones never say goodbye): those with no pending
-- entry that have not read or claimed anything for ARGV[3] ms, never the
-- caller.  In one atomic step, so no consumer can take an entry between
-- the check and XGROUP DELCONSUMER (which would drop its pending entries
-- for good); a consumer removed by mistake costs nothing, its worker's
-- next read creates it again.
--
-- KEYS[1]  the jobs stream, P:jobs
-- ARGV[1]  the consumer group, P:workers
-- ARGV[2]  the consumer (this worker), never removed
-- ARGV[3]  idle time in ms (much longer than RAGQ_RECLAIM_AFTER)
--
-- Returns the names of the consumers removed.
if redis.call('TYPE', KEYS[1])['ok'] ~= 'stream' then
  return {}
end
local found = false
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  for i = 1, #g - 1, 2 do
    if g[i] == 'name' and g[i + 1] == ARGV[1] then found = true end
  end
end
if not found then
  return {}
end
local idle_max = tonumber(ARGV[3])
local removed = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c - 1, 2 do f[c[i]] = c[i + 1] end
  if f['name'] ~= ARGV[2] and f['pending'] == 0 and type(f['idle']) == 'number'
     and f['idle'] > idle_max then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    removed[#removed + 1] = f['name']
  end
end
return removed
