#!/usr/bin/env python3
"""Valkey CPU per question for the enqueue alternatives of issue 13 (bench/ENQUEUE.md), measured
without changing the module: this sends the exact RESP bytes each alternative would send (for
today's enqueue, byte for byte what ngx_http_ragq_job.c writes) to a private redis-server and
reads Valkey's own accounting:

  - `INFO cpu` (used_cpu_sys + used_cpu_user) delta over the run / questions: everything Valkey
    spends, reading and parsing the commands, executing them, writing the replies;
  - `INFO commandstats` (after CONFIG RESETSTAT): the sum of `usec` / questions (execution only)
    and each command's `usec_per_call`.

Depth = questions whose commands go out in one write before their replies are read: 1 is a
lightly loaded nginx worker (one read and one write syscall in Valkey per question), 16 a busy
one (the module pipelines every request of an nginx worker on one connection).  Every run is
repeated (interleaved: a b c ... a b c ...) and the table shows medians.

With --callgrind it counts instead the instructions redis-server executes per question (user
space, under valgrind, --hz 1): the difference between a run with the questions and one with
only the same preparation, divided by the questions; exact and repeatable whatever else runs on
the machine (the kernel's share, the syscalls, is not in it).

Usage: bench/enqueue.py [--n 30000] [--reps 3] [--configs 1,4,16,16aof] [--only a,e,...]
                        [--out bench/raw/enqueue/enqueue.json]
       bench/enqueue.py --callgrind [--n 2000] [--depth 16] [--only ...]
       bench/enqueue.py --table          (the markdown table of --out, as in bench/ENQUEUE.md)
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PREFIX = "ragq"
JOBS = PREFIX + ":jobs"
EVENTS = PREFIX + ":events"
QUESTION = b"what is the refund policy on annual plans"[:39] + b"?"  # 40 bytes
COLLECTION = b"documents"
TENANT = b"acme-corp"
TOP_K = b"5"
MAX_QUEUE = b"100000000"

# ---- scripts and functions the alternatives would need ----------------------------------------

# (d) one EVALSHA doing today's MULTI body: HSET + XADD, returning the stream id and XLEN.
ENQUEUE_LUA = b"""
redis.call('HSET', KEYS[1], 'status', 'queued', 'query', ARGV[2], 'top_k', ARGV[3],
  'collection', ARGV[4], 'tenant', ARGV[5], 'created_at', ARGV[6], 'attempts', '0')
local sid = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1])
return {sid, redis.call('XLEN', KEYS[2])}
"""

# (d') and (g) as Valkey functions (FCALL): the same, and one XADD carrying the job behind an
# exact ragq_max_queue check (XLEN inside the same atomic step).
FUNCTIONS = b"""#!lua name=ragqbench
redis.register_function('ragq_enqueue', function(keys, args)
  redis.call('HSET', keys[1], 'status', 'queued', 'query', args[2], 'top_k', args[3],
    'collection', args[4], 'tenant', args[5], 'created_at', args[6], 'attempts', '0')
  local sid = redis.call('XADD', keys[2], '*', 'job', args[1])
  return {sid, redis.call('XLEN', keys[2])}
end)
redis.register_function('ragq_enqueue_entry', function(keys, args)
  if redis.call('XLEN', keys[1]) >= tonumber(args[1]) then
    return redis.error_reply('QUEUEFULL')
  end
  return redis.call('XADD', keys[1], '*', 'r', args[2], 'query', args[3], 'top_k', args[4],
    'collection', args[5], 'tenant', args[6], 'created_at', args[7])
end)
"""

# Today's claim (worker/scripts/claim.lua, copied at the time of measuring).
CLAIM_TODAY = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "worker",
                                "scripts", "claim.lua"), "rb").read()

# The claim under (e): the hash does not exist yet for a queued job; the worker passes the
# entry's fields (it has them from XREADGROUP/XAUTOCLAIM) and the script writes the hash.  An
# existing hash (a job canceled while queued, a reclaimed job, a job enqueued before the
# upgrade) takes today's path.
CLAIM_ENTRY = b"""
local st = redis.call('HGET', KEYS[1], 'status')
if st then
  if st == 'finished' or st == 'failed' or st == 'canceled' then return {1, st} end
  local h = redis.call('HMGET', KEYS[1], 'query', 'top_k', 'collection')
  local a = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  if a <= tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], 'status', 'started', 'started_at', ARGV[2])
    redis.call('PUBLISH', KEYS[2], ARGV[3] .. ' started')
  end
  return {2, a, h[1] or '', h[2] or '', h[3] or ''}
end
redis.call('HSET', KEYS[1], 'status', 'started', 'query', ARGV[4], 'top_k', ARGV[5],
  'collection', ARGV[6], 'tenant', ARGV[7], 'created_at', ARGV[8], 'attempts', '1',
  'started_at', ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3] .. ' started')
return {2, 1, ARGV[4], ARGV[5], ARGV[6]}
"""

# The claim under (h2): today's, reading the packed fields (the worker parses j); attempts is
# absent at enqueue, HINCRBY starts it at 1.
CLAIM_PACKED = b"""
local h = redis.call('HMGET', KEYS[1], 'status', 'j', 'query', 'top_k', 'collection')
if not h[1] then return {0} end
if h[1] == 'finished' or h[1] == 'failed' or h[1] == 'canceled' then
  return {1, h[1]}
end
local a = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if a <= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'status', 'started', 'started_at', ARGV[2])
  redis.call('PUBLISH', KEYS[2], ARGV[3] .. ' started')
end
return {2, a, h[2] or '', h[3] or '', h[4] or '', h[5] or ''}
"""

# A finished job's hash, for the /job-status reads of a finished job (the same in every model).
RESULT = (b"According to [1] (refunds.md): Annual plans can be refunded within 30 days of "
          b"purchase; after that the unused months are credited to the account.")
SOURCES = json.dumps([{"id": str(i), "score": 0.8 - i / 10, "source": "doc%d.md" % i,
                       "text": "Annual plans can be refunded within 30 days of purchase; "
                               "after that the unused months are credited to the account."}
                      for i in range(5)]).encode()


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.pos = 0

    def _fill(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise IOError("redis-server closed the connection")
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = self.buf[self.pos:i]
                self.pos = i + 2
                return line
            self._fill()

    def reply(self):
        line = self._line()
        t = line[:1]
        if t in (b"+", b":"):
            return line[1:]
        if t == b"-":
            return RuntimeError(line[1:].decode())
        if t == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            while len(self.buf) - self.pos < n + 2:
                self._fill()
            v = self.buf[self.pos:self.pos + n]
            self.pos += n + 2
            return v
        if t == b"*":
            n = int(line[1:])
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise IOError("bad reply %r" % line)

    def call(self, *args):
        self.s.sendall(resp(*args))
        r = self.reply()
        if isinstance(r, RuntimeError):
            raise r
        return r

    def run(self, payloads, nreplies, depth):
        """Sends the payloads depth at a time, reads nreplies replies per payload; returns the
        first error reply seen (None: none)."""
        err = None
        for i in range(0, len(payloads), depth):
            part = payloads[i:i + depth]
            self.s.sendall(b"".join(part))
            for _ in range(len(part) * nreplies):
                r = self.reply()
                if err is None and isinstance(r, RuntimeError):
                    err = r
                elif err is None and isinstance(r, list):
                    err = next((x for x in r if isinstance(x, RuntimeError)), None)
        return err


def info(c, section):
    out = {}
    for line in c.call("INFO", section).decode().split("\r\n"):
        if ":" in line:
            k, v = line.split(":", 1)
            out[k] = v
    return out


def cpu_s(c):
    i = info(c, "cpu")
    return float(i["used_cpu_sys"]) + float(i["used_cpu_user"])


def commandstats(c):
    out = {}
    for k, v in info(c, "commandstats").items():
        if not k.startswith("cmdstat_"):
            continue
        kv = dict(x.split("=") for x in v.split(","))
        out[k[8:]] = (int(kv["calls"]), int(kv["usec"]))
    return out


# ---- what each alternative sends, per question ------------------------------------------------

def job_id():
    return os.urandom(16).hex().encode()


def now_ms():
    return str(int(time.time() * 1000)).encode()


def hset_args(jid):
    """The module's HSET, field for field (ngx_http_ragq_job.c, ngx_http_ragq_job_multi)."""
    return (b"HSET", PREFIX.encode() + b":job:" + jid, b"status", b"queued", b"query", QUESTION,
            b"top_k", TOP_K, b"collection", COLLECTION, b"tenant", TENANT,
            b"created_at", now_ms(), b"attempts", b"0")


def entry_fields(rand):
    """(e): the job in the stream entry; r = the random part the job id must match."""
    return (b"r", rand, b"query", QUESTION, b"top_k", TOP_K, b"collection", COLLECTION,
            b"tenant", TENANT, b"created_at", now_ms())


def rand64():
    return os.urandom(8).hex().encode()


MULTI, EXEC = resp(b"MULTI"), resp(b"EXEC")
XLEN = resp(b"XLEN", JOBS)


def v_a(sha):
    jid = job_id()
    return MULTI + resp(*hset_args(jid)) + resp(b"XADD", JOBS, b"*", b"job", jid) + XLEN + EXEC


def v_b(sha):
    jid = job_id()
    return MULTI + resp(*hset_args(jid)) + resp(b"XADD", JOBS, b"*", b"job", jid) + EXEC


def v_c(sha):
    jid = job_id()
    return resp(*hset_args(jid)) + resp(b"XADD", JOBS, b"*", b"job", jid)


def v_d(sha):
    jid = job_id()
    return resp(b"EVALSHA", sha["enqueue"], b"2", PREFIX.encode() + b":job:" + jid, JOBS, jid,
                QUESTION, TOP_K, COLLECTION, TENANT, now_ms())


def v_d_fcall(sha):
    jid = job_id()
    return resp(b"FCALL", b"ragq_enqueue", b"2", PREFIX.encode() + b":job:" + jid, JOBS, jid,
                QUESTION, TOP_K, COLLECTION, TENANT, now_ms())


def packed(jid):
    """(h): the queued job's fields packed in one value (as the module could write them)."""
    return b'{"query":"%s","top_k":%s,"collection":"%s","tenant":"%s","created_at":%s}' % (
        QUESTION, TOP_K, COLLECTION, TENANT, now_ms())


def v_h(sha):
    jid = job_id()
    return (MULTI + resp(b"HSET", PREFIX.encode() + b":job:" + jid, b"j", packed(jid)) +
            resp(b"XADD", JOBS, b"*", b"job", jid) + EXEC)


def v_h2(sha):
    jid = job_id()
    return (MULTI + resp(b"HSET", PREFIX.encode() + b":job:" + jid, b"status", b"queued", b"j",
                         packed(jid)) + resp(b"XADD", JOBS, b"*", b"job", jid) + EXEC)


def meta():
    """(h3): everything but the question packed, short enough (< 64 B) to keep the hash a
    listpack: tenant, collection, top_k, created_at."""
    return b"%s|%s|%s|%s" % (now_ms(), TOP_K, TENANT, COLLECTION)


def v_h3(sha):
    jid = job_id()
    return (MULTI + resp(b"HSET", PREFIX.encode() + b":job:" + jid, b"status", b"queued",
                         b"query", QUESTION, b"m", meta()) +
            resp(b"XADD", JOBS, b"*", b"job", jid) + EXEC)


def v_e(sha):
    return resp(b"XADD", JOBS, b"*", *entry_fields(rand64()))


def v_e_xlen(sha):
    return resp(b"XADD", JOBS, b"*", *entry_fields(rand64())) + XLEN


def v_e_short(sha):
    return resp(b"XADD", JOBS, b"*", b"r", rand64(), b"q", QUESTION, b"k", TOP_K, b"c",
                COLLECTION, b"t", TENANT, b"ts", now_ms())


def v_f_nomkstream(sha):
    return resp(b"XADD", JOBS, b"NOMKSTREAM", b"*", *entry_fields(rand64()))


def v_f_maxlen(sha):
    return resp(b"XADD", JOBS, b"MAXLEN", b"~", b"1000000", b"*", *entry_fields(rand64()))


def v_g(sha):
    return resp(b"FCALL", b"ragq_enqueue_entry", b"1", JOBS, MAX_QUEUE, rand64(), QUESTION,
                TOP_K, COLLECTION, TENANT, now_ms())


LONG_QUESTION = (b"we bought the annual plan in March and cancelled in May: what is the refund "
                 b"policy for annual plans?")  # 100 bytes: over hash-max-listpack-value (64)
assert len(LONG_QUESTION) == 100 and len(QUESTION) == 40


def long_question(mk):
    def v(sha):
        global QUESTION
        q, QUESTION = QUESTION, LONG_QUESTION
        try:
            return mk(sha)
        finally:
            QUESTION = q
    return v


# name -> (payload maker, replies per question, description)
ENQUEUE = {
    "a": (v_a, 5, "before issue 13 (the Lua peer): MULTI / HSET (7 fields) / XADD job ID / XLEN / EXEC"),
    "b": (v_b, 4, "MULTI / HSET / XADD / EXEC (no XLEN)"),
    "c": (v_c, 2, "HSET + XADD pipelined, no MULTI (not atomic: reference only)"),
    "d": (v_d, 1, "EVALSHA: HSET + XADD + XLEN in a script"),
    "d_fcall": (v_d_fcall, 1, "FCALL: the same as a Valkey function"),
    "h": (v_h, 4, "MULTI / HSET job:ID j <the fields packed, 105 B> / XADD / EXEC"),
    "h2": (v_h2, 4, "MULTI / HSET job:ID status queued j <packed> / XADD / EXEC"),
    "h3": (v_h3, 4, "MULTI / HSET job:ID status queued query Q m <the rest packed, 39 B> / "
                    "XADD / EXEC"),
    "e": (v_e, 1, "as built (issue 13): one XADD carrying the job (6 fields, hash written at claim)"),
    "e_xlen": (v_e_xlen, 2, "(e) + XLEN pipelined (length on every request, not atomic)"),
    "e_short": (v_e_short, 1, "(e) with one-letter field names"),
    "f_nomkstream": (v_f_nomkstream, 1, "(e) with NOMKSTREAM"),
    "f_maxlen": (v_f_maxlen, 1, "(e) with MAXLEN ~ 1000000 (trims unfinished jobs: unusable)"),
    "g": (v_g, 1, "FCALL: XLEN check (exact ragq_max_queue) + XADD carrying the job"),
    "a_100": (long_question(v_a), 5, "(a) with a 100-byte question"),
    "h2_100": (long_question(v_h2), 4, "(h2) with a 100-byte question"),
    "h3_100": (long_question(v_h3), 4, "(h3) with a 100-byte question"),
    "e_100": (long_question(v_e), 1, "(e) with a 100-byte question"),
}


# ---- reads and the claim: state is prepared first, only the measured commands are counted -----

def prep_queued(c, n, depth):
    """n jobs enqueued three ways: (a)'s hashes + entries, (e)'s entries (stream P:jobs:e) and
    (h2)'s packed hashes (key P:job:p...); returns [(jid, entry id of (a), rand, entry id of
    (e))]."""
    out = []
    batch = []
    for _ in range(n):
        jid, r = job_id(), rand64()
        batch.append((jid, r, resp(*hset_args(jid)) + resp(b"XADD", JOBS, b"*", b"job", jid) +
                      resp(b"XADD", JOBS + ":e", b"*", *entry_fields(r)) +
                      resp(b"HSET", PREFIX.encode() + b":job:p" + jid[1:], b"status", b"queued",
                           b"j", packed(jid))))
    for i in range(0, n, 1000):
        part = batch[i:i + 1000]
        c.s.sendall(b"".join(p for _, _, p in part))
        for jid, r, _ in part:
            c.reply()
            sid_a = c.reply()
            sid_e = c.reply()
            c.reply()
            out.append((jid, sid_a, r, sid_e))
    return out


def prep_finished(c, jobs):
    cmds = [resp(b"HSET", PREFIX.encode() + b":job:" + jid, b"status", b"finished",
                 b"started_at", now_ms(), b"ended_at", now_ms(), b"attempts", b"1",
                 b"result", RESULT, b"sources", SOURCES,
                 b"usage", b'{"prompt_tokens":412,"completion_tokens":38}')
            for jid, _, _, _ in jobs]
    c.run(cmds, 1, 1000)


def reads(jobs, sha):
    key = lambda jid: PREFIX.encode() + b":job:" + jid  # noqa: E731
    return {
        "s_hgetall_queued": ([resp(b"HGETALL", key(j)) for j, _, _, _ in jobs], 1,
                             "HGETALL of a queued job's hash (before issue 13)"),
        "s_xrange": ([resp(b"XRANGE", JOBS + ":e", s, s) for _, _, _, s in jobs], 1,
                     "XRANGE id id of a queued job's entry ((e))"),
        "s_xrange_hgetall": ([resp(b"XRANGE", JOBS + ":e", s, s) +
                              resp(b"HGETALL", key(b"0" * 32)) for _, _, _, s in jobs], 2,
                             "(e), one round trip: XRANGE id id + HGETALL (no hash yet)"),
        "s_hgetall_packed": ([resp(b"HGETALL", key(b"p" + j[1:])) for j, _, _, _ in jobs], 1,
                             "HGETALL of a queued job's packed hash ((h2))"),
        "s_miss_then_xrange": ([resp(b"HGETALL", key(b"0" * 32)) + resp(b"XRANGE", JOBS + ":e",
                                                                        s, s)
                                for _, _, _, s in jobs], 2,
                               "(e), as the module would read a queued job: HGETALL (miss), "
                               "XRANGE id id"),
        "s_hgetall_miss": ([resp(b"HGETALL", key(b"0" * 32)) for _ in jobs], 1,
                           "HGETALL of a hash that does not exist"),
    }


def claims(jobs, sha):
    key = lambda jid: PREFIX.encode() + b":job:" + jid  # noqa: E731
    return {
        "claim_today": ([resp(b"EVALSHA", sha["claim_today"], b"2", key(j), EVENTS, b"5",
                              now_ms(), j) for j, _, _, _ in jobs], 1,
                        "today's claim.lua on the job's hash"),
        "claim_entry": ([resp(b"EVALSHA", sha["claim_entry"], b"2", key(b"e" + j[1:]), EVENTS,
                              b"5", now_ms(), j, QUESTION, TOP_K, COLLECTION, TENANT, now_ms())
                         for j, _, _, _ in jobs], 1,
                        "(e)'s claim: writes the hash from the entry's fields"),
        "claim_packed": ([resp(b"EVALSHA", sha["claim_packed"], b"2", key(b"p" + j[1:]), EVENTS,
                               b"5", now_ms(), j) for j, _, _, _ in jobs], 1,
                         "(h2)'s claim: today's, returning the packed fields"),
    }


def reads_finished(jobs, sha):
    return {"s_hgetall_finished": ([resp(b"HGETALL", PREFIX.encode() + b":job:" + j)
                                    for j, _, _, _ in jobs], 1,
                                   "HGETALL of a finished job (any model)")}


def xreadgroup(jobs, sha):
    """The worker's read of new entries, 64 at a time: (a)'s `job ID` vs (e)'s job fields."""
    n = len(jobs)
    return {
        "read_today": ([resp(b"XREADGROUP", b"GROUP", b"w", b"c", b"COUNT", b"64", b"STREAMS",
                             JOBS, b">")] * ((n + 63) // 64), 1,
                       "XREADGROUP COUNT 64 of `job ID` entries, per job"),
        "read_entry": ([resp(b"XREADGROUP", b"GROUP", b"w", b"c", b"COUNT", b"64", b"STREAMS",
                             JOBS + ":e", b">")] * ((n + 63) // 64), 1,
                       "XREADGROUP COUNT 64 of (e)'s entries, per job"),
    }


# ---- the server -------------------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_server(tmp, aof):
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if aof else "no", "--appendfsync", "everysec",
            "--dir", tmp, "--logfile", os.path.join(tmp, "redis.log")]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            return p, Conn(port)
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("redis-server did not start")


def setup(c):
    c.call("FLUSHALL")
    sha = {"enqueue": c.call("SCRIPT", "LOAD", ENQUEUE_LUA),
           "claim_today": c.call("SCRIPT", "LOAD", CLAIM_TODAY),
           "claim_entry": c.call("SCRIPT", "LOAD", CLAIM_ENTRY),
           "claim_packed": c.call("SCRIPT", "LOAD", CLAIM_PACKED)}
    c.call("FUNCTION", "LOAD", "REPLACE", FUNCTIONS)
    # The worker's group exists (bench conditions: no blocked reader).
    c.call("XGROUP", "CREATE", JOBS, PREFIX + ":workers", "$", "MKSTREAM")
    return sha


def measure(c, payloads, nreplies, depth, nq):
    c.call("CONFIG", "RESETSTAT")
    m0 = int(info(c, "memory")["used_memory"])
    c0 = cpu_s(c)
    t0 = time.time()
    err = c.run(payloads, nreplies, depth)
    wall = time.time() - t0
    c1 = cpu_s(c)
    m1 = int(info(c, "memory")["used_memory"])
    cs = commandstats(c)
    cs.pop("config|resetstat", None)
    cs.pop("info", None)
    if err is not None:
        raise RuntimeError("error reply: %s" % err)
    # commandstats counts a command run inside EXEC or a script twice: on its own line and
    # inside EXEC's / EVALSHA's / FCALL's usec.  Count top-level commands only.
    outer = [k for k in cs if k in ("exec", "evalsha", "eval", "fcall")]
    top = (outer + (["multi"] if "exec" in outer else [])) if outer else list(cs)
    return {"cpu_us": (c1 - c0) * 1e6 / nq,
            "cmd_us": sum(cs[k][1] for k in top if k in cs) / nq,
            "top_level_commands_per_q": len(payloads) * nreplies / nq,
            "commands": {k: {"calls": n, "usec_per_call": u / n if n else 0}
                         for k, (n, u) in sorted(cs.items())},
            "executed_commands_per_q": sum(n for n, _ in cs.values()) / nq,
            "mem_bytes_per_q": (m1 - m0) / nq,
            "wall_s": wall}


# ---- exact instruction counts (callgrind): independent of other load on the machine ----------

def callgrind_items(n):
    """(name, prep(c) -> (sha, jobs), payloads(sha, jobs) -> (payloads, nreplies))"""
    items = []
    for name, (mk, nrep, _) in ENQUEUE.items():
        items.append((name, lambda c: (setup(c), None),
                      (lambda mk, nrep: lambda sha, jobs: ([mk(sha) for _ in range(n)], nrep))(
                          mk, nrep)))
    for group in (reads, xreadgroup, claims, reads_finished):
        names = list(group([(b"0" * 32, b"0-1", b"0", b"0-1")],
                           {"enqueue": b"", "claim_today": b"", "claim_entry": b"",
                            "claim_packed": b""}))

        def prep(c, group=group):
            sha = setup(c)
            c.call("XGROUP", "CREATE", JOBS, "w", "0")
            c.call("XGROUP", "CREATE", JOBS + ":e", "w", "0", "MKSTREAM")
            jobs = prep_queued(c, n, 16)
            if group is reads_finished:
                prep_finished(c, jobs)
            return sha, jobs
        for name in names:
            items.append((name, prep, (lambda name, group: lambda sha, jobs:
                                       group(jobs, sha)[name][:2])(name, group)))
    return items


def callgrind_run(tmp, prep, payloads_fn, measured, depth):
    port = free_port()
    out = os.path.join(tmp, "callgrind.%d.out" % port)
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                          "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--hz", "1", "--dir", tmp,
                          "--logfile", os.path.join(tmp, "redis.log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c = None
    for _ in range(400):
        try:
            c = Conn(port)
            c.call("PING")
            break
        except (OSError, IOError):
            time.sleep(0.05)
    if c is None:
        p.kill()
        raise RuntimeError("redis-server under callgrind did not start")
    sha, jobs = prep(c)
    payloads, nrep = payloads_fn(sha, jobs)
    if measured:
        err = c.run(payloads, nrep, depth)
        if err is not None:
            raise RuntimeError("error reply: %s" % err)
    c.s.sendall(resp(b"SHUTDOWN", b"NOSAVE"))
    p.wait()
    with open(out) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
    if not os.environ.get("ENQUEUE_KEEP_CALLGRIND"):
        os.unlink(out)
    return total


def only_some(a):
    return bool(a.only)


def callgrind_main(a):
    tmp = tempfile.mkdtemp(prefix="ragq-enqueue-cg-")
    only = set(x for x in a.only.split(",") if x)
    res = {}
    for name, prep, payloads_fn in callgrind_items(a.n):
        if only and name not in only:
            continue
        base = callgrind_run(tmp, prep, payloads_fn, False, a.depth)
        full = callgrind_run(tmp, prep, payloads_fn, True, a.depth)
        res[name] = (full - base) / a.n
        log("callgrind %-18s %8.0f instructions per question" % (name, res[name]))
    return res


def main():
    # SIGTERM stops the servers started here too (the finally clauses run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=None, help="questions per run (30000; 2000 with "
                    "--callgrind)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--configs", default="1,4,16,16aof")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "raw", "enqueue", "enqueue.json"))
    ap.add_argument("--callgrind", action="store_true",
                    help="instructions per question under callgrind (user space, exact), "
                         "merged into --out")
    ap.add_argument("--depth", type=int, default=16, help="with --callgrind")
    ap.add_argument("--table", action="store_true", help="print --out's tables (markdown)")
    a = ap.parse_args()
    if a.n is None:
        a.n = 2000 if a.callgrind else 30000
    if a.table:
        doc = json.load(open(a.out))
        print(table(doc["summary"], doc["describe"], doc.get("callgrind")))
        return
    if a.callgrind:
        res = callgrind_main(a)
        doc = json.load(open(a.out)) if os.path.exists(a.out) else {}
        prev = doc.get("callgrind", {}).get("instructions_per_q", {}) if only_some(a) else {}
        prev.update(res)
        doc["callgrind"] = {"n": a.n, "depth": a.depth, "instructions_per_q": prev}
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(doc, f, indent=1)
        return
    only = set(x for x in a.only.split(",") if x)
    results = {}
    started = time.time()
    load0 = open("/proc/loadavg").read().split()[:3]
    for cfg in a.configs.split(","):
        aof = cfg.endswith("aof")
        depth = int(cfg[:-3] if aof else cfg)
        # At depth 1 a question costs several times more (a read and a write syscall each):
        # fewer questions give the same precision.
        n = a.n if depth >= 4 else max(1000, a.n // 5)
        tmp = tempfile.mkdtemp(prefix="ragq-enqueue-")
        proc, c = start_server(tmp, aof)
        try:
            for rep in range(a.reps):
                # Enqueue alternatives, each on an empty store with the group created.
                for name, (mk, nrep, _) in ENQUEUE.items():
                    if only and name not in only:
                        continue
                    sha = setup(c)
                    payloads = [mk(sha) for _ in range(n)]
                    r = measure(c, payloads, nrep, depth, n)
                    results.setdefault(cfg, {}).setdefault(name, []).append(r)
                    log("%s rep %d %-14s %6.2f µs CPU/q, %5.2f µs in commands, %.1f cmds/q"
                        % (cfg, rep + 1, name, r["cpu_us"], r["cmd_us"], r["executed_commands_per_q"]))
                # Reads, the claim and the worker's read, on a store of n queued jobs.
                for group in (reads, xreadgroup, claims, reads_finished):
                    if only and not only & set(group([(b"0" * 32, b"0-1", b"0", b"0-1")],
                                                     {"enqueue": b"", "claim_today": b"",
                                                      "claim_entry": b"",
                                                      "claim_packed": b""})):
                        continue
                    sha = setup(c)
                    c.call("XGROUP", "CREATE", JOBS, "w", "0")
                    c.call("XGROUP", "CREATE", JOBS + ":e", "w", "0", "MKSTREAM")
                    jobs = prep_queued(c, n, depth)
                    if group is reads_finished:
                        prep_finished(c, jobs)
                    for name, (payloads, nrep, _) in group(jobs, sha).items():
                        if only and name not in only:
                            continue
                        r = measure(c, payloads, nrep, depth if group is not xreadgroup else 1,
                                    n)
                        results.setdefault(cfg, {}).setdefault(name, []).append(r)
                        log("%s rep %d %-18s %6.2f µs CPU/q, %5.2f µs in commands"
                            % (cfg, rep + 1, name, r["cpu_us"], r["cmd_us"]))
        finally:
            proc.terminate()
            proc.wait()
    desc = {k: v[2] for k, v in ENQUEUE.items()}
    for g in (reads, xreadgroup, claims, reads_finished):
        desc.update({k: v[2] for k, v in g([(b"0" * 32, b"0-1", b"0", b"0-1")],
                                          {"enqueue": b"", "claim_today": b"",
                                           "claim_entry": b"", "claim_packed": b""}).items()})
    summary = {cfg: {name: {"cpu_us": statistics.median(r["cpu_us"] for r in rs),
                            "cmd_us": statistics.median(r["cmd_us"] for r in rs),
                            "cpu_us_runs": [round(r["cpu_us"], 2) for r in rs],
                            "commands_per_q": rs[0]["top_level_commands_per_q"],
                            "mem_bytes_per_q": statistics.median(
                                r.get("mem_bytes_per_q", 0) for r in rs),
                            "commands": rs[len(rs) // 2]["commands"]}
                     for name, rs in byname.items()}
               for cfg, byname in results.items()}
    env = {"redis": subprocess.run(["redis-server", "--version"], capture_output=True,
                                   text=True).stdout.strip(),
           "n": a.n, "reps": a.reps, "configs": a.configs,
           "loadavg_start": load0, "seconds": round(time.time() - started),
           "loadavg_end": open("/proc/loadavg").read().split()[:3],
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"env": env, "describe": desc, "summary": summary, "runs": results}, f,
                  indent=1)
    log("wrote %s" % a.out)
    print(table(summary, desc, json.load(open(a.out)).get("callgrind")))


def table(summary, desc, cg=None):
    cfgs = list(summary)
    names = []
    for cfg in cfgs:
        names += [n for n in summary[cfg] if n not in names]
    ins = (cg or {}).get("instructions_per_q", {})
    head = ("| | alternative | top-level commands | " +
            ("instructions (callgrind) | " if ins else "") +
            " | ".join("CPU µs (in commands), %s" % label(c) for c in cfgs) + " |")
    out = [head, "|---|---|---|" + ("---|" if ins else "") + "---|" * len(cfgs)]
    for n in names:
        cells = []
        for cfg in cfgs:
            x = summary[cfg].get(n)
            cells.append("%.2f (%.2f)" % (x["cpu_us"], x["cmd_us"]) if x else "–")
        cq = next(summary[c][n]["commands_per_q"] for c in cfgs if n in summary[c])
        out.append("| %s | %s | %s | %s%s |" % (
            n, desc.get(n, ""), ("%.2f" % cq) if cq < 1 else "%d" % cq,
            ("%s | " % ("%.1fk" % (ins[n] / 1000.0) if n in ins else "–")) if ins else "",
            " | ".join(cells)))
    return "\n".join(out)


def label(cfg):
    return ("depth %s, AOF everysec" % cfg[:-3]) if cfg.endswith("aof") else "depth %s" % cfg


def log(msg):
    sys.stderr.write("%s enqueue: %s\n" % (time.strftime("%H:%M:%S"), msg))


if __name__ == "__main__":
    main()
