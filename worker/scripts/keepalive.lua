-- keepalive.lua: a worker resets the idle time of the stream entries of
-- the jobs it runs (XCLAIM ... 0), so RAGQ_RECLAIM_AFTER measures a silent
-- worker, not a long generation, but only for jobs it still holds by their
-- fencing token: an entry another worker has legitimately reclaimed (and
-- claimed again, so attempts moved on) is never taken back.  What it says
-- of the others tells the worker to stop running them.
--
-- KEYS[1]          the jobs stream, P:jobs
-- KEYS[2..n+1]     the job hashes, P:job:ID
-- ARGV[1]          the consumer group, P:workers
-- ARGV[2]          the consumer (this worker)
-- ARGV[3..n+2]     the stream entry ids, in the order of KEYS[2..]
-- ARGV[n+3..2n+2]  the claims' tokens (attempts), in the same order
--
-- Returns one number a job, in order:
--   1  still ours: its entry is claimed again with idle 0
--   0  stale: another claim holds the job now (attempts or owner differ)
--   2  gone: the hash expired or was deleted, or is not a hash any more
--   3  final: finished, failed or canceled (by someone else, or our own
--      final write whose reply was lost)
local n = #KEYS - 1
local out, mine = {}, {}
for i = 1, n do
  local r = 2
  if redis.call('TYPE', KEYS[i + 1])['ok'] == 'hash' then
    local h = redis.call('HMGET', KEYS[i + 1], 'status', 'attempts', 'owner')
    if h[1] == 'finished' or h[1] == 'failed' or h[1] == 'canceled' then
      r = 3
    elseif h[2] == ARGV[n + 2 + i] and h[3] == ARGV[2] then
      r = 1
      mine[#mine + 1] = ARGV[i + 2]
    else
      r = 0
    end
  end
  out[i] = r
end
-- XCLAIM takes many ids at once; unpack() has a limit, so in batches.
for i = 1, #mine, 200 do
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(mine, i, math.min(i + 199, #mine)))
end
return out
