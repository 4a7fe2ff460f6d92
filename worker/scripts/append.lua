-- append.lua: one batch of an answer's streamed pieces, appended to the
-- job's output stream P:out:ID and announced with one PUBLISH on the
-- channel of the same name, written only by the claim that still holds the
-- job (its fencing token), so a stale attempt (reclaimed from a frozen or
-- cut-off worker) cannot add text to the stream of the attempt that runs.
-- Every check comes before the first write (the only one Valkey may
-- refuse, OOM): the batch is written whole or not at all.
--
-- Entries have explicit ids 0-1, 0-2, 0-3, ... (the SSE event ids of
-- /job-stream, so Last-Event-ID N resumes with XRANGE key (0-N +):
--   piece:  t <text>  a <attempt>
--   reset:  reset <attempt>  a <attempt>
-- A reset entry says "forget the text since the last reset": written
-- before the first piece of a new try (a new attempt after a reclaim or a
-- release, or the chat call retried within an attempt) when the stream
-- already holds a piece since its last reset.  So the pieces after the
-- last reset, concatenated, are the text of the try that ends the job.
--
-- The message published on KEYS[2] is the batch, entry by entry, as
--   <seq>:<kind>:<length>:<bytes>
-- with kind t (bytes: the text) or r (bytes: the attempt), so a subscriber
-- needs no read unless the first seq is not the one it expects.
--
-- KEYS[1]  the job hash, P:job:ID
-- KEYS[2]  the output stream P:out:ID, also the channel
-- ARGV[1]  the claim's token: attempts as the claim script returned it
-- ARGV[2]  the consumer that claimed it (the job's "owner")
-- ARGV[3]  '1' when this batch begins a new try, else '0'
-- ARGV[4..] the pieces, in order (none: only a reset, if one is due)
--
-- Returns
--   N >= 0  the seq of the last entry of the stream after the batch
--   -1      stale: another claim holds the job now; nothing written
--   -2      the job is not running (gone, not a hash, not 'started'):
--           nothing written
-- An error reply (OOM, P:out:ID of another type) wrote nothing.
-- The entries are 0-1 .. 0-N with nothing ever deleted (the stream only
-- expires whole), so XLEN is the last seq: O(1), where reading the last
-- entry back costs Valkey about as much as the rest of the script.  An ACL
-- without XLEN (the worker's ACL of 0.5.0) gets the read-back instead.
local function last_entry()
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  return last[1]
end

local function is_wrongtype(r)
  return string.sub(r.err, 1, 9) == 'WRONGTYPE'
end

-- Errors other than WRONGTYPE (a key of another kind) go back as they are.
local h = redis.pcall('HMGET', KEYS[1], 'status', 'attempts', 'owner')
if h.err and not is_wrongtype(h) then
  return h
end
if h.err or h[1] ~= 'started' then
  return -2
end
if h[2] ~= ARGV[1] or h[3] ~= ARGV[2] then
  return -1
end
local last -- the stream's last entry, read only when needed
local seq = redis.pcall('XLEN', KEYS[2])
if type(seq) ~= 'number' then
  if is_wrongtype(seq) then
    return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' must be a stream')
  end
  last = last_entry()
  seq = last and tonumber(string.match(last[1], '^0%-(%d+)$') or '0') or 0
end

local msg = {}
if ARGV[3] == '1' and seq > 0 then
  local last_is_reset = false
  last = last or last_entry()
  for i = 1, #last[2], 2 do
    if last[2][i] == 'reset' then last_is_reset = true end
  end
  if not last_is_reset then
    seq = seq + 1
    redis.call('XADD', KEYS[2], '0-' .. seq, 'reset', ARGV[1], 'a', ARGV[1])
    msg[#msg + 1] = seq .. ':r:' .. #ARGV[1] .. ':' .. ARGV[1]
  end
end
for i = 4, #ARGV do
  seq = seq + 1
  redis.call('XADD', KEYS[2], '0-' .. seq, 't', ARGV[i], 'a', ARGV[1])
  msg[#msg + 1] = seq .. ':t:' .. #ARGV[i] .. ':' .. ARGV[i]
end
if #msg > 0 then
  redis.call('PUBLISH', KEYS[2], table.concat(msg))
end
return seq
