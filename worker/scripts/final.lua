-- final.lua: a job's final state and the acknowledgement of its stream
-- entry, in one atomic step, written only by the claim that still holds
-- the job (its fencing token), so a job run twice (reclaimed from a slow
-- or frozen worker) ends in exactly one final state, the current owner's.
-- Every check comes before the first write, and the first write is the
-- only one Valkey may refuse (OOM): the job is written whole (state, TTL,
-- dead entry, event, ack) or not at all.
--
-- KEYS[1]  the job hash, P:job:ID
-- KEYS[2]  the events channel, P:events
-- KEYS[3]  the dead stream, P:dead
-- KEYS[4]  the jobs stream, P:jobs
-- KEYS[5]  the answer's output stream, P:out:ID (append.lua): it gets
--          the job's TTL with the hash, whatever the outcome.  When the
--          job finishes and the pieces since its last reset are not the
--          result (an append was lost: OOM, NOSCRIPT, a dropped piece),
--          a reset and the whole result as one piece are appended (and
--          published), so the stream always ends with the result.
-- ARGV[1]  'finished' or 'failed'
-- ARGV[2]  ended_at, epoch ms
-- ARGV[3]  RAGQ_RESULT_TTL in ms (PEXPIRE of the hash)
-- ARGV[4]  result        (finished)
-- ARGV[5]  sources JSON  (finished)
-- ARGV[6]  usage JSON    (finished)
-- ARGV[7]  error JSON    (failed)
-- ARGV[8]  the stream entry id
-- ARGV[9]  the job id (the event message is "ID STATUS")
-- ARGV[10] the consumer group, P:workers
-- ARGV[11] the claim's token: attempts as the claim script returned it
-- ARGV[12] the consumer that claimed it (the job's "owner")
--
-- Returns
--    1  the final state is written, the entry acknowledged and deleted
--    0  the job was already final, or its hash is gone (no hash is ever
--       re-created): the entry is acknowledged and deleted
--   -1  stale: another claim holds the job now (attempts or owner
--       differ); nothing is written and the entry is left to its owner
--   -2  the job key is not a hash: left untouched, a dead-stream entry
--       (invalid_job) written, the entry acknowledged and deleted
-- An error reply (OOM, a bad TTL, or P:dead / P:jobs of the wrong type)
-- wrote nothing.
local function kind(k) return redis.call('TYPE', k)['ok'] end

local dead_t, jobs_t = kind(KEYS[3]), kind(KEYS[4])
if (dead_t ~= 'none' and dead_t ~= 'stream') or (jobs_t ~= 'none' and jobs_t ~= 'stream') then
  return redis.error_reply('WRONGTYPE ' .. KEYS[3] .. ' and ' .. KEYS[4] .. ' must be streams')
end
if not string.find(ARGV[3], '^[1-9]%d*$') or (ARGV[1] ~= 'finished' and ARGV[1] ~= 'failed') then
  return redis.error_reply('ERR final.lua: bad status or TTL')
end

local function ack()
  redis.call('XACK', KEYS[4], ARGV[10], ARGV[8])
  redis.call('XDEL', KEYS[4], ARGV[8])
end

local t = kind(KEYS[1])
if t == 'none' then
  ack()
  return 0
end
if t ~= 'hash' then
  local m = 'the job key ' .. KEYS[1] .. ' holds a ' .. t .. ', not a hash; left as it is'
  redis.call('XADD', KEYS[3], '*', 'job', ARGV[9], 'error',
             '{"code":"invalid_job","message":' .. cjson.encode(m) .. '}')
  ack()
  return -2
end

local h = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'owner')
if h[1] == 'finished' or h[1] == 'failed' or h[1] == 'canceled' then
  ack()
  return 0
end
if h[2] ~= ARGV[11] or h[3] ~= ARGV[12] then
  return -1
end

-- The output stream checked (reads only, before the first write).
local out_t, out_seq, out_ok = kind(KEYS[5]), 0, true
if ARGV[1] == 'finished' and KEYS[5] ~= KEYS[1] and (out_t == 'stream' or out_t == 'none') then
  local since = {}
  if out_t == 'stream' then
    local all = redis.call('XREVRANGE', KEYS[5], '+', '-')
    if #all > 0 then
      out_seq = tonumber(string.match(all[1][1], '^0%-(%d+)$') or '0')
    end
    for _, e in ipairs(all) do
      local f, t, reset = e[2], nil, false
      for i = 1, #f, 2 do
        if f[i] == 'reset' then reset = true elseif f[i] == 't' then t = f[i + 1] end
      end
      if reset then break end
      if t then since[#since + 1] = t end
    end
  end
  local text = {}
  for i = #since, 1, -1 do text[#text + 1] = since[i] end
  out_ok = table.concat(text) == ARGV[4]
end

if ARGV[1] == 'finished' then
  redis.call('HSET', KEYS[1], 'status', 'finished', 'ended_at', ARGV[2], 'result', ARGV[4], 'sources', ARGV[5], 'usage', ARGV[6])
  redis.call('HDEL', KEYS[1], 'error')
else
  redis.call('HSET', KEYS[1], 'status', 'failed', 'ended_at', ARGV[2], 'error', ARGV[7])
  redis.call('XADD', KEYS[3], '*', 'job', ARGV[9], 'error', ARGV[7])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if not out_ok then
  local msg, a = {}, ARGV[11]
  if out_seq > 0 then
    out_seq = out_seq + 1
    redis.call('XADD', KEYS[5], '0-' .. out_seq, 'reset', a, 'a', a)
    msg[#msg + 1] = out_seq .. ':r:' .. #a .. ':' .. a
  end
  out_seq = out_seq + 1
  redis.call('XADD', KEYS[5], '0-' .. out_seq, 't', ARGV[4], 'a', a)
  msg[#msg + 1] = out_seq .. ':t:' .. #ARGV[4] .. ':' .. ARGV[4]
  redis.call('PUBLISH', KEYS[5], table.concat(msg))
end
redis.call('PEXPIRE', KEYS[5], ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[9] .. ' ' .. ARGV[1])
ack()
return 1
