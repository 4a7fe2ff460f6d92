-- final.lua: a job's final state and the acknowledgement of its stream
-- entry, in one atomic step, written only by the claim that still holds
-- the job (its fencing token), so a job run twice (reclaimed from a slow
-- or frozen worker) ends in exactly one final state, the current owner's.
-- Every check comes before the first write, and the first write is the
-- only one Valkey may refuse (OOM): the job is written whole (state, TTL,
-- dead entry, event, ack) or not at all.
--
-- A missing hash whose entry (ARGV[8], still in KEYS[4]) carries this job
-- (its r is the last 16 hex digits of ARGV[9], and it has a query) is a
-- claim lost, not a job gone: the claim's write did not survive a
-- fail-over (replication is asynchronous), so the new primary has the
-- entry but no hash.  The hash is re-created from the entry as claim.lua
-- writes it (every entry field but r, callback_url only when not empty),
-- with this claim's status started, attempts ARGV[11], owner ARGV[12] and
-- started_at ARGV[13] (the value the lost claim wrote), and the final state
-- is written over it as for any job (1).  Otherwise the accepted job would
-- be acknowledged away: its answer and its callback lost, its id a 404.
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
-- ARGV[13] (optional) the claim's started_at, epoch ms (claim.lua's
--          ARGV[2]): written only into a hash re-created here (absent or
--          "": none)
--
-- Returns
--    1  the final state is written, the entry acknowledged and deleted
--       (also when the hash was re-created from the entry, above)
--    2  the job was already final with this status, written by this same
--       claim (attempts and owner are the token): our own earlier write,
--       whose reply was lost.  The entry is acknowledged and deleted; the
--       caller ends the job as for 1 (log line, callback)
--    0  the job was already final (another status, or another claim's
--       write), or its hash is gone and its entry does not carry it (an
--       entry of the "job ID" form, or no entry): the entry is
--       acknowledged and deleted, nothing else written but the TTL
--       ARGV[3] of a canceled hash (the cancel left it none while the
--       entry waited)
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

-- The hash of the job the entry carries, as claim.lua writes it, with this
-- claim in it (reads only): a list of fields and values, or nil.
local function carried()
  if jobs_t ~= 'stream' then return nil end
  local e = redis.call('XRANGE', KEYS[4], ARGV[8], ARGV[8])
  if #e == 0 then return nil end
  local f, v = e[1][2], {}
  for i = 1, #f - 1, 2 do
    if v[f[i]] == nil then v[f[i]] = f[i + 1] end
  end
  if #ARGV[9] ~= 32 or v['r'] ~= string.sub(ARGV[9], 17) or not v['query'] then
    return nil
  end
  local h = {'status', 'started', 'query', v['query'], 'top_k', v['top_k'] or '',
             'collection', v['collection'] or '', 'tenant', v['tenant'] or '',
             'created_at', v['created_at'] or '', 'attempts', ARGV[11], 'owner', ARGV[12]}
  if ARGV[13] and ARGV[13] ~= '' then
    h[#h + 1] = 'started_at'
    h[#h + 1] = ARGV[13]
  end
  if v['callback_url'] and v['callback_url'] ~= '' then
    h[#h + 1] = 'callback_url'
    h[#h + 1] = v['callback_url']
  end
  return h
end

local t, lost = kind(KEYS[1]), nil
if t == 'none' then
  lost = carried()
  if not lost then
    ack()
    return 0
  end
end
if t ~= 'hash' and not lost then
  local m = 'the job key ' .. KEYS[1] .. ' holds a ' .. t .. ', not a hash; left as it is'
  redis.call('XADD', KEYS[3], '*', 'job', ARGV[9], 'error',
             '{"code":"invalid_job","message":' .. cjson.encode(m) .. '}')
  ack()
  return -2
end

local h = lost and {'started', ARGV[11], ARGV[12]}
              or redis.call('HMGET', KEYS[1], 'status', 'attempts', 'owner')
if h[1] == 'finished' or h[1] == 'failed' or h[1] == 'canceled' then
  local ours = h[1] == ARGV[1] and h[2] == ARGV[11] and h[3] == ARGV[12]
  if h[1] == 'canceled' then
    -- canceled while it ran: the cancel left it no TTL while its entry
    -- waited (claim.lua); the entry goes now, so the hash may
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
  ack()
  return ours and 2 or 0
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

-- The first write: the hash re-created (a lost claim), or the final state.
if lost then
  redis.call('HSET', KEYS[1], unpack(lost))
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
