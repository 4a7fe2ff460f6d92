-- claim.lua: a worker takes a job whose stream entry it was just handed
-- (XREADGROUP or XAUTOCLAIM), in one atomic step (DEVELOPERS.md, "Worker
-- claim / retry protocol").  Every check comes before the first write, and
-- the first write is the only one Valkey may refuse (OOM): a claim either
-- happens whole or not at all, never with a Lua runtime error half-way.
-- (The hash of a job its entry carries is that first write; the checks of
-- the job itself then read it as they read any job hash.)
--
-- KEYS[1]  the job hash, P:job:ID
-- KEYS[2]  the events channel, P:events
-- KEYS[3]  the dead stream, P:dead
-- KEYS[4]  the jobs stream, P:jobs
-- KEYS[5]  (optional) the answer's output stream, P:out:ID: a job failed
--          here gets it expired with its hash (earlier attempts' pieces)
-- ARGV[1]  RAGQ_MAX_ATTEMPTS
-- ARGV[2]  now, epoch ms (started_at, or ended_at of a job failed here)
-- ARGV[3]  the job id (the event message is "ID STATUS")
-- ARGV[4]  the stream entry id
-- ARGV[5]  the consumer group, P:workers
-- ARGV[6]  the consumer (this worker): the job's "owner" while it runs
-- ARGV[7]  RAGQ_RESULT_TTL in ms (PEXPIRE of a job failed here)
-- ARGV[8]  the largest top_k a job may ask for
-- ARGV[9]  "1" when the entry carries the job (the module's one XADD), then
-- ARGV[10..14]  its query, top_k, collection, tenant, created_at: with no
--          hash yet, the claim writes it from them (status queued, attempts
--          0) and goes on as for any queued job.  Absent for a "job ID"
--          entry (enqueued before), whose hash the module wrote.
-- ARGV[15] (optional, with ARGV[9] "1") the entry's callback_url, written
--          into the hash with the job (absent or "": none)
--
-- Returns
--   {0}                  the hash is gone (expired or deleted) and the
--                        entry does not carry the job: entry acked
--   {1, status, callback_url, called}
--                        the job is already final: entry acked (a
--                        canceled one, which the cancel left without a
--                        TTL while its entry waited, gets ARGV[7]); its
--                        callback_url ("" for none) and whether its
--                        callback outcome is written (1) or not (0), so
--                        that a job canceled while queued gets its callback
--   {2, attempts, query, top_k, collection, callback_url}
--                        claimed: status started, owner ARGV[6]; attempts
--                        (this claim counted) is the claim's fencing token,
--                        which the final, release and keep-alive scripts
--                        check; top_k is "" (the worker's default) or 1..ARGV[8]
--   {3, code, message, callback_url}
--                        failed here, entry acked, never run:
--                        invalid_job: a malformed job (status, attempts,
--                          query or top_k), written failed with a
--                          dead-stream entry; or a key that is not a hash,
--                          left untouched (it is not ours to overwrite)
--                          with a dead-stream entry;
--                        max_attempts: claimed more than ARGV[1] times
--                          (workers kept dying on it), written failed with
--                          a dead-stream entry.
-- An error reply (OOM, or P:dead / P:jobs of the wrong type) wrote nothing.
local function kind(k) return redis.call('TYPE', k)['ok'] end

local dead_t, jobs_t = kind(KEYS[3]), kind(KEYS[4])
if (dead_t ~= 'none' and dead_t ~= 'stream') or (jobs_t ~= 'none' and jobs_t ~= 'stream') then
  return redis.error_reply('WRONGTYPE ' .. KEYS[3] .. ' and ' .. KEYS[4] .. ' must be streams')
end

local function ack()
  redis.call('XACK', KEYS[4], ARGV[5], ARGV[4])
  redis.call('XDEL', KEYS[4], ARGV[4])
end

local function error_json(code, message)
  return '{"code":"' .. code .. '","message":' .. cjson.encode(message) .. '}'
end

-- A value in a message: short printable ASCII as it is, else its size.
local function shown(v)
  if #v <= 40 and not string.find(v, '[^ -~]') then return "'" .. v .. "'" end
  return 'a value of ' .. #v .. ' bytes'
end

local function fail(code, message)
  local e = error_json(code, message)
  redis.call('HSET', KEYS[1], 'status', 'failed', 'ended_at', ARGV[2], 'error', e)
  redis.call('XADD', KEYS[3], '*', 'job', ARGV[3], 'error', e)
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  if KEYS[5] then
    redis.call('PEXPIRE', KEYS[5], ARGV[7])
  end
  redis.call('PUBLISH', KEYS[2], ARGV[3] .. ' failed')
  ack()
  return {3, code, message, redis.call('HGET', KEYS[1], 'callback_url') or ''}
end

local t = kind(KEYS[1])
if t == 'none' and ARGV[9] == '1' then
  -- The first claim of a job its entry carries: its hash starts as the
  -- module's used to write it.  This is the claim's first write.
  redis.call('HSET', KEYS[1], 'status', 'queued', 'query', ARGV[10], 'top_k', ARGV[11],
             'collection', ARGV[12], 'tenant', ARGV[13], 'created_at', ARGV[14], 'attempts', '0')
  if ARGV[15] and ARGV[15] ~= '' then
    redis.call('HSET', KEYS[1], 'callback_url', ARGV[15])
  end
  t = 'hash'
end
if t == 'none' then
  ack()
  return {0}
end
if t ~= 'hash' then
  local m = 'the job key ' .. KEYS[1] .. ' holds a ' .. t .. ', not a hash; left as it is'
  redis.call('XADD', KEYS[3], '*', 'job', ARGV[3], 'error', error_json('invalid_job', m))
  ack()
  return {3, 'invalid_job', m, ''}
end

local h = redis.call('HMGET', KEYS[1], 'status', 'query', 'top_k', 'collection', 'attempts',
                     'callback_url', 'callback')
local status, query, top_k, attempts = h[1], h[2], h[3] or '', h[5]
if status == 'finished' or status == 'failed' or status == 'canceled' then
  -- A job canceled while its entry waited (queued, or running on a worker
  -- that died since) has no TTL: had its hash expired first, this claim
  -- would have written it queued again and run it.  Its entry goes now, so
  -- its hash may.  (No PTTL test: the worker's ACL has no +pttl.)
  if status == 'canceled' then
    redis.call('PEXPIRE', KEYS[1], ARGV[7])
  end
  ack()
  return {1, status, h[6] or '', h[7] and 1 or 0}
end
if status ~= 'queued' and status ~= 'started' then
  return fail('invalid_job', status and 'the job has an unknown status ' .. shown(status)
                                      or 'the job has no status')
end
-- As HINCRBY reads a number: digits, no sign, no leading zero, no overflow.
if attempts and not (attempts == '0' or (#attempts <= 15 and string.find(attempts, '^[1-9]%d*$'))) then
  return fail('invalid_job', 'attempts is not a whole number: ' .. shown(attempts))
end
if not query or query == '' then
  return fail('invalid_job', 'the job has no query')
end
if string.find(query, '\0', 1, true) then
  return fail('invalid_job', 'the query contains a NUL byte')
end
if top_k ~= '' and not (#top_k <= 9 and string.find(top_k, '^[1-9]%d*$')
                        and tonumber(top_k) <= tonumber(ARGV[8])) then
  return fail('invalid_job', 'top_k must be a whole number from 1 to ' .. ARGV[8] .. ', got ' .. shown(top_k))
end

local a = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if a > tonumber(ARGV[1]) then
  return fail('max_attempts', 'the job was claimed ' .. a .. ' times without finishing (RAGQ_MAX_ATTEMPTS is '
              .. ARGV[1] .. '); the workers running it may have crashed')
end
redis.call('HSET', KEYS[1], 'status', 'started', 'started_at', ARGV[2], 'owner', ARGV[6])
redis.call('PUBLISH', KEYS[2], ARGV[3] .. ' started')
return {2, a, query, top_k, h[4] or '', h[6] or ''}
