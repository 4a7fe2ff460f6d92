#!/usr/bin/env python3
"""Open streams on one nginx worker (issue 12's `make bench` part): what an open /job-stream
costs nginx, and what a streamed answer costs Valkey.

One nginx worker (worker_processes 1) with the module, a private redis-server, the stand-in
(chat streamed one event per word, --token-ms apart) and one ragq-worker:

1. N jobs are queued through POST /chat with no worker running; N clients open
   GET /job-stream on them (one stream per job, so N per-job subscriptions) and each waits for
   its first `status` event. The nginx worker's RSS (VmRSS) before and after, divided by N, is
   the memory of one open stream; the same N clients then hold N idle keep-alive connections
   to a `return 204` location of the same nginx: the baseline an open stream is compared with.
   PUBSUB NUMSUB confirms one subscription per open job.
2. The worker starts; every stream must end with `done`, after `token` events whose texts
   concatenated equal the job's `result` (counted, not timed). MONITOR counts the Valkey
   commands nginx and the worker send per streamed answer.
3. The clients close; PUBSUB NUMSUB says no per-job subscription is left.

Usage: streams.py --nginx BIN --module SO --worker BIN --standin PY --out FILE
                  [--streams 1000,4000] [--words 200] [--token-ms 10]
"""

import argparse
import collections
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from worker_bench import Monitor, Resp, write_data  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, what, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("%s exited (%s)" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not listen on %d" % (what, port))


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def cpu_ns(pid):
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0])


def nginx_worker_pid(master):
    with open("/proc/%d/task/%d/children" % (master, master)) as f:
        kids = [int(x) for x in f.read().split()]
    if len(kids) != 1:
        raise RuntimeError("expected one nginx worker, found %s" % kids)
    return kids[0]


NGINX_CONF = """
load_module %(module)s;
worker_processes 1;
daemon on;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
worker_rlimit_nofile %(nofile)d;
events { worker_connections %(conns)d; }
http {
    access_log off;
    client_body_temp_path %(dir)s/tmp;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    ragq_valkey 127.0.0.1:%(vport)d;
    ragq_prefix ragq;
    ragq_max_queue 100000000;
    ragq_stream_heartbeat 600s;
    server {
        listen 127.0.0.1:%(port)d backlog=8192;
        location = /chat { ragq_enqueue; }
        location = /job-status { ragq_status; }
        location = /job-stream { ragq_stream; }
        location = /idle { return 204; }
    }
}
"""


class Client:
    """One HTTP/1.1 connection: a request, then the SSE stream (or a 204) as it comes."""

    __slots__ = ("sock", "job", "buf", "events", "tokens", "text", "done", "status",
                 "headers_done", "chunk_left", "raw")

    def __init__(self, sock, job):
        self.sock, self.job = sock, job
        self.buf = b""
        self.raw = b""
        self.events = collections.Counter()
        self.text = []
        self.done = None
        self.status = None
        self.headers_done = False
        self.chunk_left = None

    def feed(self, data):
        """Parses the chunked SSE body; returns True when the response has ended."""
        self.raw += data
        if not self.headers_done:
            i = self.raw.find(b"\r\n\r\n")
            if i < 0:
                return False
            self.status = int(self.raw[9:12])
            self.headers_done = True
            self.raw = self.raw[i + 4:]
            if self.status == 204:
                return True
        ended = False
        while True:
            if self.chunk_left is None:
                i = self.raw.find(b"\r\n")
                if i < 0:
                    break
                n = int(self.raw[:i].split(b";")[0], 16)
                self.raw = self.raw[i + 2:]
                if n == 0:
                    ended = True
                    break
                self.chunk_left = n
            if len(self.raw) < self.chunk_left + 2:
                break
            self.buf += self.raw[:self.chunk_left]
            self.raw = self.raw[self.chunk_left + 2:]
            self.chunk_left = None
        while b"\n\n" in self.buf:
            block, self.buf = self.buf.split(b"\n\n", 1)
            ev, data = "message", []
            for line in block.decode("utf-8").split("\n"):
                if line.startswith("event:"):
                    ev = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
            if block.startswith(b":"):
                ev = "comment"
            self.events[ev] += 1
            if ev == "token":
                self.text.append(json.loads("\n".join(data))["text"])
            elif ev == "reset":
                self.text = []
            elif ev == "done":
                self.done = json.loads("\n".join(data))
        return ended


def open_all(port, paths, jobs, sel):
    clients = []
    for path, job in zip(paths, jobs):
        s = socket.socket()
        s.setblocking(True)
        s.connect(("127.0.0.1", port))
        s.sendall(("GET %s HTTP/1.1\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n" %
                   path).encode())
        s.setblocking(False)
        c = Client(s, job)
        sel.register(s, selectors.EVENT_READ, c)
        clients.append(c)
    return clients


def pump(sel, until, timeout):
    """Reads every ready client until until() is true or timeout seconds passed."""
    end = time.time() + timeout
    while not until() and time.time() < end:
        for key, _ in sel.select(0.2):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(c.sock)
                c.sock.close()
                c.done = c.done or {"status": "closed"}
                continue
            if c.feed(data) and c.status != 204:
                sel.unregister(c.sock)
                c.sock.close()
    return until()


def chat(port, n):
    """N jobs through POST /chat on one keep-alive connection, pipelined by 100."""
    s = socket.create_connection(("127.0.0.1", port))
    ids, pending, buf = [], 0, b""
    body = b'{"query":"what is the refund policy for annual plans"}'
    req = (b"POST /chat HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    sent = 0
    while len(ids) < n:
        k = min(100, n - sent)
        if k > 0 and pending == 0:
            s.sendall(req * k)
            sent += k
            pending += k
        data = s.recv(65536)
        if not data:
            raise RuntimeError("nginx closed the /chat connection")
        buf += data
        while True:
            m = re.search(rb"\r\n\r\n", buf)
            if not m:
                break
            head = buf[:m.start()]
            ln = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
            if len(buf) < m.end() + ln:
                break
            body_ = buf[m.end():m.end() + ln]
            buf = buf[m.end() + ln:]
            if not head.startswith(b"HTTP/1.1 202"):
                raise RuntimeError("POST /chat: %r" % head[:40] + body_[:200])
            ids.append(json.loads(body_)["job_id"])
            pending -= 1
    s.close()
    return ids


def numsub(r, ids):
    rep = r.call("PUBSUB", "NUMSUB", *["ragq:out:%s" % j for j in ids])
    return sum(int(rep[i]) for i in range(1, len(rep), 2))


def run(a, n, tmp):
    d = tempfile.mkdtemp(dir=tmp, prefix="streams-%d-" % n)
    os.makedirs(d + "/tmp")
    procs = []
    try:
        vport, port = free_port(), free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(vport), "--save", "",
                                       "--appendonly", "no", "--maxclients", "20000"],
                                      stdout=open(d + "/redis.log", "w"),
                                      stderr=subprocess.STDOUT))
        wait_port(vport, procs[-1], "redis-server")
        r = Resp(vport)
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        with open(d + "/nginx.conf", "w") as f:
            f.write(NGINX_CONF % {"module": a.module, "dir": d, "port": port, "vport": vport,
                                  "nofile": min(nofile, 3 * n + 1000),
                                  "conns": 3 * n + 1000})
        out = subprocess.run([a.nginx, "-p", d, "-c", d + "/nginx.conf"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError("nginx: " + out.stderr)
        time.sleep(0.3)
        master = int(open(d + "/nginx.pid").read())
        wpid = nginx_worker_pid(master)
        wait_port(port, subprocess.Popen(["true"]), "nginx")

        write_data(d + "/data.json")
        sp = subprocess.Popen([sys.executable, a.standin, "--port", "0", "--latency-ms", "100",
                               "--token-ms", str(a.token_ms), "--answer-words", str(a.words),
                               "--exit-with-parent", "--data", d + "/data.json"],
                              stdout=subprocess.PIPE, stderr=open(d + "/standin.log", "w"),
                              text=True)
        procs.append(sp)
        sport = int(sp.stdout.readline().split()[1])

        ids = chat(port, n)
        time.sleep(0.5)
        rss0, cpu0 = vm(wpid, "VmRSS"), cpu_ns(wpid)
        sel = selectors.DefaultSelector()
        streams = open_all(port, ["/job-stream?job_id=%s" % j for j in ids], ids, sel)
        ok = pump(sel, lambda: all(c.events["status"] >= 1 for c in streams), 120)
        time.sleep(0.5)
        rss1, cpu1 = vm(wpid, "VmRSS"), cpu_ns(wpid)
        subs = numsub(r, ids)
        # The baseline: as many idle keep-alive connections to the same nginx.
        idle = open_all(port, ["/idle"] * n, [None] * n, sel)
        pump(sel, lambda: all(c.status == 204 for c in idle), 120)
        time.sleep(0.5)
        rss2 = vm(wpid, "VmRSS")
        for c in idle:
            sel.unregister(c.sock)
            c.sock.close()

        # 2. the answers are written
        mon = Monitor(vport, [r.s.getsockname()[1]])
        wk = subprocess.Popen([a.worker], env=dict(
            os.environ, RAGQ_VALKEY_URL="redis://127.0.0.1:%d" % vport, RAGQ_PREFIX="ragq",
            OPENAI_BASE_URL="http://127.0.0.1:%d/v1" % sport, OPENAI_API_KEY="bench",
            QDRANT_URL="http://127.0.0.1:%d" % sport, RAGQ_COLLECTION="documents",
            RAGQ_CONCURRENCY=str(min(n, 1024)), RAGQ_LOG_LEVEL="1"),
            stdout=open(d + "/worker.log", "w"), stderr=subprocess.STDOUT)
        procs.append(wk)
        t0 = time.time()
        ended = pump(sel, lambda: all(c.done is not None for c in streams),
                     120 + n * 3.0 * a.words * a.token_ms / 1000.0 / min(n, 1024))
        span = time.time() - t0
        cpu2 = cpu_ns(wpid)
        mon.close()
        top, lua = mon.counts()

        # Each stream's text against the job's result.
        res = r.pipeline([("HGET", "ragq:job:%s" % j, "result") for j in ids])
        same = sum(1 for c, x in zip(streams, res)
                   if c.done and c.done.get("status") == "finished"
                   and x is not None and "".join(c.text) == (x.decode() if isinstance(x, bytes) else x))
        done = sum(1 for c in streams if c.done and c.done.get("status") == "finished")
        time.sleep(0.5)
        left = numsub(r, ids)
        nginx_cmds = collections.Counter()
        worker_cmds = collections.Counter()
        # MONITOR's client addresses: nginx's connections are those that SUBSCRIBE'd or sent
        # XADD (the enqueue happened before MONITOR); the worker's run its scripts.
        by_client = mon.by_client()
        for who, cmds in by_client.items():
            if who == "lua":
                continue
            if cmds.get("EVALSHA") or cmds.get("XREADGROUP"):
                worker_cmds.update(cmds)
            else:
                nginx_cmds.update(cmds)
        tokens = sum(c.events["token"] for c in streams)
        return {
            "streams": n, "opened": sum(1 for c in streams if c.events["status"] >= 1),
            "all_opened": ok, "subscriptions_open": subs,
            "rss_before_kb": rss0, "rss_streams_kb": rss1, "rss_idle_kb": rss2,
            "rss_per_stream_b": (rss1 - rss0) * 1024.0 / n,
            "rss_per_idle_conn_b": (rss2 - rss1) * 1024.0 / n,
            "nginx_cpu_open_us_per_stream": (cpu1 - cpu0) / 1e3 / n,
            "nginx_cpu_answer_us_per_stream": (cpu2 - cpu1) / 1e3 / n,
            "finished": done, "text_equals_result": same, "all_ended": ended,
            "tokens_per_stream": tokens / n, "span_s": span,
            "subscriptions_left": left,
            "valkey_cmds_per_answer_nginx": sum(nginx_cmds.values()) / n,
            "valkey_cmds_per_answer_worker": sum(worker_cmds.values()) / n,
            "valkey_cmds_in_scripts_per_answer": sum(lua.values()) / n,
            "nginx_cmds": dict(nginx_cmds), "worker_cmds": dict(worker_cmds),
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        try:
            pid = int(open(d + "/nginx.pid").read())
            os.kill(pid, signal.SIGQUIT)
        except (OSError, ValueError):
            pass
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nginx", default="/usr/sbin/nginx")
    ap.add_argument("--module", required=True)
    ap.add_argument("--worker", required=True)
    ap.add_argument("--standin", required=True)
    ap.add_argument("--streams", default="1000,4000")
    ap.add_argument("--words", type=int, default=200)
    ap.add_argument("--token-ms", type=float, default=10.0)
    ap.add_argument("--tmp", default=tempfile.gettempdir())
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    runs = []
    for n in (int(x) for x in a.streams.split(",")):
        if 2 * n + 100 > hard:
            sys.stderr.write("streams: %d streams need %d file descriptors, the limit is %d\n"
                             % (n, 2 * n + 100, hard))
            continue
        pt = run(a, n, a.tmp)
        sys.stderr.write("streams %s\n" % json.dumps(
            {k: v for k, v in pt.items() if not k.endswith("_cmds")}))
        runs.append(pt)
    with open(a.out, "w") as f:
        json.dump({"words": a.words, "token_ms": a.token_ms, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
