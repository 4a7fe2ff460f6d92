-- release.lua: an attempt gave up on transient errors (its calls ran out of
-- retries) and attempts are left: the job goes back to 'queued' with the
-- last error, for visibility.  The stream entry stays un-acknowledged and
-- is reclaimed by any worker after RAGQ_RECLAIM_AFTER.
--
-- KEYS[1]  the job hash, P:job:ID
-- KEYS[2]  the events channel, P:events
-- ARGV[1]  error JSON
-- ARGV[2]  the job id (the event message is "ID queued")
--
-- Returns 1.  Only a 'started' job is touched: a final one stays final and
-- a missing hash is not re-created.
if redis.call('HGET', KEYS[1], 'status') == 'started' then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'error', ARGV[1])
  redis.call('PUBLISH', KEYS[2], ARGV[2] .. ' queued')
end
return 1
