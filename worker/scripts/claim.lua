-- claim.lua: a worker takes a job whose stream entry it was just handed
-- (XREADGROUP or XAUTOCLAIM), in one atomic step (DEVELOPERS.md, "Worker
-- claim / retry protocol").
--
-- KEYS[1]  the job hash, P:job:ID
-- KEYS[2]  the events channel, P:events
-- ARGV[1]  RAGQ_MAX_ATTEMPTS
-- ARGV[2]  now, epoch ms (started_at)
-- ARGV[3]  the job id (the event message is "ID started")
--
-- Returns
--   {0}                            the hash is gone (expired or deleted)
--   {1, status}                    the job is already final: only ack it
--   {2, attempts, query, top_k, collection}
--                                  claimed; attempts counts this claim too.
--                                  Over ARGV[1] the status is left alone and
--                                  the worker fails the job (max_attempts).
local h = redis.call('HMGET', KEYS[1], 'status', 'query', 'top_k', 'collection')
if not h[1] then return {0} end
if h[1] == 'finished' or h[1] == 'failed' or h[1] == 'canceled' then
  return {1, h[1]}
end
local a = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if a <= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'status', 'started', 'started_at', ARGV[2])
  redis.call('PUBLISH', KEYS[2], ARGV[3] .. ' started')
end
return {2, a, h[2] or '', h[3] or '', h[4] or ''}
