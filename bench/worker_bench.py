#!/usr/bin/env python3
"""Worker throughput benchmark driver (bench/run starts redis-server and the stand-ins and
passes their ports): for each jobs-in-flight point it enqueues jobs straight into Valkey with
the module's data model, starts ragq-worker with RAGQ_CONCURRENCY=point, waits until the queue
stream is empty, then reads first started_at / last ended_at from the job hashes and the worker's
CPU time and peak RSS from wait4()'s rusage. Writes one JSON document with every point.

Usage: worker_bench.py --redis PORT --chat-url URL --embed-url URL --qdrant-url URL
                       --worker BIN --points 1,64,256,1024 --out FILE
                       [--standin-pids PID,PID] [--call-ms 100] [--rounds 8] [--max-jobs 4096]
"""

import argparse
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time

QUESTIONS = [
    "what is the refund policy for annual plans",
    "how do I rotate an API key",
    "which regions store customer data",
    "how long are backups kept",
    "can I export my invoices as CSV",
    "what happens when a payment fails",
    "how do I invite a teammate",
    "is single sign-on supported",
]

DOCS = [
    "Annual plans can be refunded within 30 days of purchase; after that the unused months "
    "are credited to the account.",
    "API keys are rotated from the settings page; the old key keeps working for 24 hours.",
    "Customer data is stored in the EU (Frankfurt) or the US (Virginia), chosen at signup.",
    "Backups are taken every night and kept for 35 days, then deleted.",
    "Invoices can be exported as CSV or PDF from the billing page.",
    "When a payment fails we retry three times over a week and email the account owner.",
    "Teammates are invited from the members page by email address.",
    "Single sign-on with SAML and OIDC is available on the business plan.",
]


class Resp:
    """Just enough RESP2 for pipelined commands; replies come back as Python values."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise IOError("valkey closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise IOError("valkey closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise IOError("bad RESP reply %r" % line)

    def pipeline(self, cmds, batch=2000):
        out = []
        for i in range(0, len(cmds), batch):
            part = cmds[i:i + batch]
            self.s.sendall(b"".join(self.encode(*c) for c in part))
            out.extend(self.reply() for _ in part)
        return out

    def call(self, *args):
        return self.pipeline([args])[0]


def ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def cpu_ns(pid):
    """CPU time on all of a process's threads, in ns (schedstat: ns resolution, unlike the
    10 ms ticks of /proc/PID/stat)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def vm(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def redis_cpu(r):
    info = r.call("INFO", "cpu")
    vals = dict(l.split(":", 1) for l in info.split("\r\n") if ":" in l)
    return float(vals["used_cpu_sys"]) + float(vals["used_cpu_user"])


def enqueue(r, prefix, n):
    """The jobs as the module enqueues them (DEVELOPERS.md, "data model"):
    one XADD that carries each; the id is the entry id and r."""
    rs = [os.urandom(8).hex() for _ in range(n)]
    now = int(time.time() * 1000)
    cmds = [("XADD", prefix + ":jobs", "*", "r", rs[i],
             "query", QUESTIONS[i % len(QUESTIONS)], "top_k", "5", "collection", "",
             "tenant", "", "created_at", now) for i in range(n)]
    ids = []
    for rep, rnd in zip(r.pipeline(cmds), rs):
        if isinstance(rep, RuntimeError):
            raise rep
        entry = rep.decode() if isinstance(rep, bytes) else rep
        ms, seq = entry.split("-")
        ids.append("%012x%04x%s" % (int(ms), int(seq), rnd))
    return ids


def start_point(a, r, p, standins, njobs):
    # Start-up (config, connections, curl init) is not per-job work: let it
    # finish and count CPU from here on.
    time.sleep(0.5)
    wc0 = cpu_ns(p.pid)
    t_start = time.time()
    ids = enqueue(r, a.prefix, njobs)
    st0 = [ticks(x) for x in standins]
    rc0 = redis_cpu(r)
    return wc0, t_start, ids, st0, rc0


def run_point(a, r, inflight, extra_env=None, njobs=None):
    hz = os.sysconf("SC_CLK_TCK")
    njobs = njobs or min(a.max_jobs, max(10, inflight * a.rounds))
    r.call("FLUSHALL")
    standins = [int(p) for p in a.standin_pids.split(",") if p]
    env = dict(os.environ,
               RAGQ_VALKEY_URL="redis://127.0.0.1:%d" % a.redis,
               RAGQ_PREFIX=a.prefix,
               OPENAI_BASE_URL=a.chat_url, OPENAI_API_KEY="bench",
               RAGQ_EMBED_BASE_URL=a.embed_url, RAGQ_EMBED_API_KEY="bench",
               QDRANT_URL=a.qdrant_url, RAGQ_COLLECTION="documents",
               RAGQ_CONCURRENCY=str(inflight), RAGQ_RESULT_TTL="1h",
               RAGQ_LOG_LEVEL="1", RAGQ_SHUTDOWN_GRACE="5s")
    env.update(extra_env or {})
    log = open(os.path.join(a.tmp, "worker-%d.log" % inflight), "wb")
    p = subprocess.Popen([a.worker], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wc0, t_start, ids, st0, rc0 = start_point(a, r, p, standins, njobs)
    except BaseException:
        p.kill()
        p.wait()
        raise
    ideal = min(inflight, njobs) / (3 * a.call_ms / 1000.0)
    deadline = t_start + max(30.0, 4 * njobs / ideal)
    wc1 = None
    hwm = None
    timed_out = False
    try:
        while True:
            time.sleep(0.05)
            if p.poll() is not None:
                break
            hwm = vm(p.pid, "VmHWM") or hwm
            if r.call("XLEN", a.prefix + ":jobs") == 0:
                break
            if time.time() > deadline:
                timed_out = True
                break
        hwm = vm(p.pid, "VmHWM") or hwm
        wc1 = cpu_ns(p.pid) if p.poll() is None else None
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            _, status, ru = os.wait4(p.pid, 0)
        except ChildProcessError:
            status, ru = p.returncode, None
        log.close()
    st1 = [ticks(pid) for pid in standins]
    rc1 = redis_cpu(r)

    rows = r.pipeline([("HMGET", "%s:job:%s" % (a.prefix, j), "status", "started_at",
                        "ended_at", "error") for j in ids])
    finished = sum(1 for x in rows if x[0] == "finished")
    failed = [x for x in rows if x[0] == "failed"]
    starts = [int(x[1]) for x in rows if x[1]]
    ends = [int(x[2]) for x in rows if x[2] and x[0] in ("finished", "failed")]
    span = (max(ends) - min(starts)) / 1000.0 if starts and ends else None
    done = finished + len(failed)
    # Where the time goes: per-job duration (upstream calls + Valkey writes)
    # versus how fast jobs are claimed.
    durs = sorted(int(x[2]) - int(x[1]) for x in rows if x[1] and x[2])
    pct = (lambda q: durs[min(len(durs) - 1, int(q * len(durs)))] if durs else None)
    cpu_s = (wc1 - wc0) / 1e9 if wc1 is not None else None
    total_cpu_s = (ru.ru_utime + ru.ru_stime) if ru else None
    out = {
        "inflight": inflight, "jobs": njobs, "finished": finished, "failed": len(failed),
        "first_error": failed[0][3] if failed else None,
        "timed_out": timed_out, "worker_exit": status,
        "span_s": span,
        "job_ms_p50": pct(0.50), "job_ms_p99": pct(0.99),
        "claim_span_s": (max(starts) - min(starts)) / 1000.0 if starts else None,
        "jobs_per_s": done / span if span else None,
        "ideal_per_s": ideal,
        "ratio": (done / span) / ideal if span else None,
        "worker_cpu_s": cpu_s,
        "worker_cpu_total_s": total_cpu_s,
        "cpu_ms_per_job": cpu_s * 1000.0 / done if cpu_s is not None and done else None,
        "peak_rss_kb": max(filter(None, [hwm, ru.ru_maxrss if ru else None]), default=None),
        "standin_cpu_pct": [100.0 * (b - a_) / hz / span if span else None
                            for a_, b in zip(st0, st1)],
        "redis_cpu_ms_per_job": (rc1 - rc0) * 1000.0 / done if done else None,
        "wall_s": time.time() - t_start,
    }
    sys.stderr.write("worker point %s\n" % json.dumps(out))
    return out


def standin_stream(a, token_ms, words):
    """Sets the chat stand-in's streamed answers: pause between events and answer length."""
    import urllib.request
    base = a.chat_url[:-3] if a.chat_url.endswith("/v1") else a.chat_url
    req = urllib.request.Request(base + "/_standin/stream", method="POST",
                                 data=json.dumps({"token_ms": token_ms,
                                                  "answer_words": words}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()


class Monitor:
    """MONITOR on its own connection, in a thread: every command Valkey runs, with who sent it
    ("lua" for a command run by a script), so commands per job are counted exactly.  It slows
    Valkey down, so it runs in a separate, small pass, never beside a CPU measurement."""

    def __init__(self, port, skip_ports):
        import threading
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.sendall(Resp.encode("MONITOR"))
        self.skip = set("127.0.0.1:%d" % p for p in skip_ports)
        self.lines = []
        self.stop = False
        self.t = threading.Thread(target=self.read, daemon=True)
        self.t.start()

    def read(self):
        buf = b""
        while not self.stop:
            try:
                data = self.s.recv(1 << 16)
            except OSError:
                break
            if not data:
                break
            buf += data
            *lines, buf = buf.split(b"\r\n")
            self.lines.extend(lines)

    def close(self):
        time.sleep(0.2)
        self.stop = True
        self.s.close()
        self.t.join(2)

    def by_client(self):
        """{client address or "lua": Counter of commands}, the bench's own connections left out."""
        out = collections.defaultdict(collections.Counter)
        for raw in self.lines:
            line = raw.decode("utf-8", "replace")
            if not line.startswith("+") or "] " not in line:
                continue
            who = line[line.index("[") + 1:line.index("]")].split(" ", 1)[-1]
            if who in self.skip:
                continue
            out[who][line.split("] ", 1)[1].split(" ", 1)[0].strip('"').upper()] += 1
        return out

    def counts(self):
        """{command: n} sent by clients other than the bench, and {command: n} run in scripts."""
        top, lua = collections.Counter(), collections.Counter()
        for who, cmds in self.by_client().items():
            (lua if who == "lua" else top).update(cmds)
        return top, lua


def stream_price(a, r):
    """Issue 13 item 3: one worker's cost per job with streaming off and on, for the same
    answer (a.stream_words words, a.stream_token_ms between the stand-in's events): CPU and
    Valkey CPU per job (a.stream_reps interleaved repetitions), then Valkey commands per job
    under MONITOR (a separate small pass)."""
    standin_stream(a, a.stream_token_ms, a.stream_words)
    clients = [c for c in a.stream_clients.split(",") if c]
    out = {"inflight": a.stream_inflight, "jobs": a.stream_jobs, "words": a.stream_words,
           "token_ms": a.stream_token_ms, "clients": clients, "reps": [], "commands": {}}
    try:
        for rep in range(a.stream_reps):
            for mode in ("off", "on"):
                # The worker's own HTTP/1.1 client and curl (the baseline) in turn.
                for client in (clients if rep % 2 == 0 else clients[::-1]):
                    pt = run_point(a, r, a.stream_inflight,
                                   {"RAGQ_STREAM": mode, "RAGQ_HTTP_CLIENT": client},
                                   a.stream_jobs)
                    pt["stream"] = mode
                    pt["client"] = client
                    pt["rep"] = rep
                    out["reps"].append(pt)
        for mode in ("off", "on"):
            mon = Monitor(a.redis, [r.s.getsockname()[1]])
            pt = run_point(a, r, 32, {"RAGQ_STREAM": mode}, 32)
            mon.close()
            top, lua = mon.counts()
            done = pt["finished"] + pt["failed"]
            out["commands"][mode] = {
                "jobs": done,
                "top_level_per_job": sum(top.values()) / done if done else None,
                "in_scripts_per_job": sum(lua.values()) / done if done else None,
                "top_level": dict(top), "in_scripts": dict(lua)}
    finally:
        standin_stream(a, 0, 0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", type=int, required=True)
    ap.add_argument("--chat-url", required=True)
    ap.add_argument("--embed-url", required=True)
    ap.add_argument("--qdrant-url", required=True)
    ap.add_argument("--worker", required=True)
    ap.add_argument("--points", default="1,64,256,1024")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tmp", default="/tmp")
    ap.add_argument("--prefix", default="ragq")
    ap.add_argument("--standin-pids", default="")
    ap.add_argument("--call-ms", type=float, default=100.0)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--max-jobs", type=int, default=4096)
    ap.add_argument("--stream-out", default=None,
                    help="also price streaming (issue 13 item 3) into this JSON file")
    ap.add_argument("--stream-inflight", type=int, default=64)
    ap.add_argument("--stream-jobs", type=int, default=256)
    ap.add_argument("--stream-reps", type=int, default=3)
    ap.add_argument("--stream-words", type=int, default=200)
    ap.add_argument("--stream-token-ms", type=float, default=10.0)
    ap.add_argument("--stream-clients", default="own,curl",
                    help="RAGQ_HTTP_CLIENT values priced side by side (the first is reported)")
    ap.add_argument("--only-stream", action="store_true", help="skip the throughput points")
    a = ap.parse_args()
    r = Resp(a.redis)
    if a.stream_out:
        with open(a.stream_out, "w") as f:
            json.dump(stream_price(a, r), f, indent=1)
    if a.only_stream:
        return
    points = [run_point(a, r, int(x)) for x in a.points.split(",")]
    with open(a.out, "w") as f:
        json.dump({"call_ms": a.call_ms, "points": points}, f, indent=1)


def write_data(path):
    with open(path, "w") as f:
        json.dump({"collection": "documents",
                   "points": [{"id": i + 1, "payload": {"page_content": d,
                                                        "metadata": {"source": "doc%d.md" % i}}}
                              for i, d in enumerate(DOCS)]}, f)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write-data":
        write_data(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "--enqueue":  # bench/profile
        enqueue(Resp(int(sys.argv[2])), "ragq", int(sys.argv[3]))
    else:
        main()
