-- release.lua: an attempt gave up on transient errors (its calls ran out of
-- retries) and attempts are left: the job goes back to 'queued' with the
-- last error, for visibility.  The stream entry stays un-acknowledged and
-- is reclaimed by any worker after RAGQ_RECLAIM_AFTER.  Only the claim that
-- still holds the job (its fencing token) may release it: a stale attempt
-- must not flip a job another worker is running back to 'queued'.
--
-- KEYS[1]  the job hash, P:job:ID
-- KEYS[2]  the events channel, P:events
-- ARGV[1]  error JSON
-- ARGV[2]  the job id (the event message is "ID queued")
-- ARGV[3]  the claim's token: attempts as the claim script returned it
-- ARGV[4]  the consumer that claimed it (the job's "owner")
--
-- Returns 1 when released; 0 when the job is not 'started' (final, gone,
-- not a hash: nothing is touched, no hash is re-created); -1 when stale
-- (another claim holds it: nothing is touched).
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then
  return 0
end
local h = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'owner')
if h[1] ~= 'started' then
  return 0
end
if h[2] ~= ARGV[3] or h[3] ~= ARGV[4] then
  return -1
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'error', ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[2] .. ' queued')
return 1
