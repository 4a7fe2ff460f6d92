-- final.lua: a job's final state and the acknowledgement of its stream
-- entry, in one atomic step, so a job run twice (reclaimed from a slow
-- worker) still ends in exactly one final state.
--
-- KEYS[1]  the job hash, P:job:ID
-- KEYS[2]  the events channel, P:events
-- KEYS[3]  the dead stream, P:dead
-- KEYS[4]  the jobs stream, P:jobs
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
--
-- Returns 1 when it wrote the final state, 0 when the job was already final
-- or its hash is gone (no hash is ever re-created).  The entry is
-- acknowledged and deleted either way.
local s = redis.call('HGET', KEYS[1], 'status')
local wrote = 0
if s and s ~= 'finished' and s ~= 'failed' and s ~= 'canceled' then
  if ARGV[1] == 'finished' then
    redis.call('HSET', KEYS[1], 'status', 'finished', 'ended_at', ARGV[2], 'result', ARGV[4], 'sources', ARGV[5], 'usage', ARGV[6])
    redis.call('HDEL', KEYS[1], 'error')
  else
    redis.call('HSET', KEYS[1], 'status', 'failed', 'ended_at', ARGV[2], 'error', ARGV[7])
    redis.call('XADD', KEYS[3], '*', 'job', ARGV[9], 'error', ARGV[7])
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PUBLISH', KEYS[2], ARGV[9] .. ' ' .. ARGV[1])
  wrote = 1
end
redis.call('XACK', KEYS[4], ARGV[10], ARGV[8])
redis.call('XDEL', KEYS[4], ARGV[8])
return wrote
