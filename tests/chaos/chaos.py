#!/usr/bin/env python3
"""tests/chaos/chaos.py: ragq under crashes, stalls and a flapping upstream (`make chaos`).

Owns: one bounded chaos run on private loopback ports, and its verdict. It starts a Valkey
(redis-server with AOF, appendfsync everysec, noeviction), the stand-in upstreams with 20 % of
calls faulted (429 + Retry-After, 500, hung calls that time out, connection resets), nginx with
the module, and three ragq-workers; sends a steady load of POST /chat (each with its own
Idempotency-Key, retried with the same key after a 503 or a dropped connection, as README tells
clients to); meanwhile SIGKILLs and restarts workers at random, SIGKILLs Valkey and restarts it
from its AOF, and SIGSTOPs Valkey past nginx's ragq_valkey_timeout. Then it stops the load,
lets the queue drain and counts:

  accepted    jobs answered 202
  finished    accepted jobs that ended finished
  failed      accepted jobs that ended failed, by error code
  lost        accepted jobs that never reached a final state (or whose hash is gone);
              those accepted within FSYNC_WINDOW seconds before a Valkey SIGKILL are counted
              apart: appendfsync everysec may lose them (README, "Valkey: persistence")
  duplicated  jobs whose model answered more than once (the stand-in's tally of 2xx chat
              completions per job): the price of at-least-once, reported, allowed
  finalized twice
              jobs whose final state was written more than once (the worker logs each
              write that took effect; failed jobs with more than one dead-stream entry);
              allowed only when the first write was within FSYNC_WINDOW before a Valkey
              SIGKILL (the AOF may have lost it)

and fails (exit 1) on any loss or double finalisation outside the fsync window, on a worker
that died by itself (a ragq-worker, or an nginx worker on a signal: nginx's error.log), or on
entries left in the stream. `--short` is the bounded pass CI runs.

    tests/chaos/chaos.py [--short] [--duration S] [--rate N] [--seed N] [--keep] [--json FILE]
    tests/chaos/chaos.py --short --no-aof     # must FAIL: jobs lost with Valkey's data
"""

import argparse
import collections
import datetime
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PREFIX = "chaos"
FSYNC_WINDOW = 2.0  # seconds: everysec fsyncs once a second; a slow fsync can delay the next
COLLECTION = "docs"
TAG_RE = re.compile(r"chaos-[0-9]+")
LOG_FINAL_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ragq-worker\[\d+\] \w+: "
    r"job ([0-9a-f]{32}) (finished in|failed in|failed at claim)", re.M)


def log(msg):
    sys.stderr.write("chaos %s %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(cond, secs, step=0.05):
    deadline = time.time() + secs
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


# --------------------------------------------------------------------------- Valkey

class RespError(Exception):
    pass


class Resp:
    """A minimal RESP2 client: one connection, commands pipelined, replies parsed."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("connection closed")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode("utf-8", "replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ConnectionError("bad reply %r" % line)

    def pipeline(self, cmds):
        self.sock.sendall(b"".join(self.encode(c) for c in cmds))
        return [self.read() for _ in cmds]

    def cmd(self, *args):
        r = self.pipeline([args])[0]
        if isinstance(r, RespError):
            raise r
        return r


class Valkey:
    def __init__(self, tmp, aof=True):
        self.port = free_port()
        self.dir = os.path.join(tmp, "valkey")
        os.makedirs(self.dir)
        self.conf = os.path.join(tmp, "valkey.conf")
        with open(self.conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\nappendonly %s\nappendfsync everysec\n"
                    "save \"\"\nmaxmemory-policy noeviction\nlogfile %s\ndaemonize no\n"
                    % (self.port, self.dir, "yes" if aof else "no",
                       os.path.join(tmp, "valkey.log")))
        self.proc = None
        self.kills = []  # times of SIGKILL

    def start(self):
        self.proc = subprocess.Popen(["redis-server", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if not wait_until(self.ready, 20):
            raise RuntimeError("redis-server did not come up")

    def ready(self):
        try:
            r = Resp(self.port, timeout=0.5)
            try:
                return r.cmd("PING") == "PONG"
            finally:
                r.close()
        except (OSError, RespError, ConnectionError):
            return False

    def kill(self):
        self.kills.append(time.time())
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


# --------------------------------------------------------------------------- stand-ins

class Standin:
    def __init__(self, tmp, seed):
        self.err = open(os.path.join(tmp, "standin.err"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "standins", "standin.py"),
             "--host", "127.0.0.1", "--port", "0", "--dim", "16", "--seed", str(seed),
             "--exit-with-parent"], stdout=subprocess.PIPE, stderr=self.err)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"ready (\d+)", line)
        if not m:
            raise RuntimeError("stand-in did not start: %r" % line)
        self.port = int(m.group(1))

    def request(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        data = json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        out = r.read()
        c.close()
        if r.status >= 300:
            raise RuntimeError("stand-in %s %s: %d %s" % (method, path, r.status, out[:200]))
        return json.loads(out) if out else None

    def setup(self, fault_share):
        texts = ["The capital of France is Paris.", "Berlin is the capital of Germany.",
                 "Rome is the capital of Italy."]
        vecs = self.request("POST", "/v1/embeddings", {"model": "m", "input": texts})["data"]
        vecs = sorted(vecs, key=lambda d: d["index"])
        self.request("PUT", "/collections/%s" % COLLECTION,
                     {"vectors": {"size": 16, "distance": "Cosine"}})
        self.request("PUT", "/collections/%s/points?wait=true" % COLLECTION, {"points": [
            {"id": i + 1, "vector": vecs[i]["embedding"],
             "payload": {"page_content": t, "metadata": {"source": "doc%d.md" % (i + 1)}}}
            for i, t in enumerate(texts)]})
        # fault_share of every API call is faulted: half of it 429 + Retry-After, then 500,
        # hung calls (the worker's RAGQ_HTTP_TIMEOUT ends them) and connection resets.
        # Rules are tried in order, so each probability is conditional on the ones before.
        shares = [("429", 0.5), ("500", 0.2), ("hang", 0.15), ("reset", 0.15)]
        left, rules = 1.0, []
        for kind, part in shares:
            p = fault_share * part / left
            left -= fault_share * part
            rule = {"path": "", "times": -1, "probability": min(1.0, p)}
            if kind == "429":
                rule.update(status=429, headers={"Retry-After": "1"})
            elif kind == "500":
                rule.update(status=500)
            else:
                rule.update(mode=kind)
            rules.append(rule)
        self.request("POST", "/_standin/faults", rules)
        self.request("POST", "/_standin/tally", {"path": "/v1/chat/completions",
                                                "pattern": TAG_RE.pattern})

    def tally(self):
        return self.request("GET", "/_standin/tally")["counts"]

    def stats(self):
        return self.request("GET", "/_standin/stats")["requests"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------- nginx

class Nginx:
    def __init__(self, tmp, build, valkey_port):
        self.port = free_port()
        self.tmp = tmp
        self.conf = os.path.join(tmp, "nginx.conf")
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
            os.makedirs(os.path.join(tmp, "nginx", d), exist_ok=True)
        n = os.path.join(tmp, "nginx")
        with open(self.conf, "w") as f:
            f.write("""load_module %(module)s;
daemon off;
master_process on;
worker_processes 2;
pid %(n)s/nginx.pid;
error_log %(n)s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %(n)s/client_body;
    proxy_temp_path %(n)s/proxy;
    fastcgi_temp_path %(n)s/fastcgi;
    uwsgi_temp_path %(n)s/uwsgi;
    scgi_temp_path %(n)s/scgi;
    ragq_valkey 127.0.0.1:%(vport)d;
    ragq_prefix %(prefix)s;
    ragq_valkey_timeout 1s;
    server {
        listen 127.0.0.1:%(port)d;
        location = /chat { ragq_collection %(coll)s; ragq_top_k 2; ragq_enqueue; }
        location = /job-status { ragq_status; }
    }
}
""" % {"module": os.path.join(build, "ngx_http_ragq_module.so"), "n": n, "vport": valkey_port,
       "prefix": PREFIX, "port": self.port, "coll": COLLECTION})
        self.proc = subprocess.Popen(["/usr/sbin/nginx", "-p", n + "/", "-c", self.conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(n, "stderr.log"), "w"))
        if not wait_until(self.listening, 10):
            raise RuntimeError("nginx did not start: see %s/error.log" % n)

    def crashes(self):
        """nginx workers that died on a signal (the master respawns them)."""
        path = os.path.join(self.tmp, "nginx", "error.log")
        with open(path, errors="replace") as f:
            return [l.rstrip() for l in f if "exited on signal" in l]

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.3).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------- workers

class Workers:
    """Three worker slots; each logs to its own file (appended across restarts)."""

    def __init__(self, tmp, build, env, n=3):
        self.bin = os.path.join(build, "ragq-worker")
        self.env = env
        self.logs = [os.path.join(tmp, "worker-%d.log" % i) for i in range(n)]
        self.procs = [None] * n
        self.killed = set()
        self.unexpected = []  # (slot, exit status, log tail)
        self.lock = threading.Lock()

    def start(self, i):
        with self.lock:
            out = open(self.logs[i], "a")
            self.procs[i] = subprocess.Popen([self.bin], env=self.env, stdout=out, stderr=out,
                                             stdin=subprocess.DEVNULL)
            out.close()

    def start_all(self):
        for i in range(len(self.procs)):
            self.start(i)

    def kill(self, i):
        with self.lock:
            p = self.procs[i]
            if p and p.poll() is None:
                self.killed.add(p.pid)
                p.send_signal(signal.SIGKILL)
                p.wait()

    def check(self, outage):
        """A worker that exited without our SIGKILL: restarted; counted unless it gave up on
        a Valkey that was down (exit 1, 'unreachable' at start-up) during an outage we made
        (`outage`: one is going on or ended less than 10 s ago)."""
        for i, p in enumerate(self.procs):
            if p is None or p.poll() is None:
                continue
            if p.pid not in self.killed:
                tail = open(self.logs[i]).read()[-2000:]
                expected = p.returncode == 1 and "unreachable" in tail and outage
                if not expected:
                    self.unexpected.append((i, p.returncode, tail))
                    log("worker %d exited by itself (status %s)" % (i, p.returncode))
                self.start(i)

    def stop_all(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            if p:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


# --------------------------------------------------------------------------- load

class Load:
    """Steady POST /chat at `rate` a second from a few threads; each job has its own tag and
    Idempotency-Key and is retried with the same key until 202 or `give_up` seconds."""

    def __init__(self, port, rate, threads=8, give_up=20.0):
        self.port = port
        self.rate = rate
        self.give_up = give_up
        self.accepted = {}  # seq -> (job id, time of the 202)
        self.statuses = collections.Counter()  # every answer, by status (or "error")
        self.gave_up = []
        self.seq = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.todo = collections.deque()
        self.cv = threading.Condition()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        self.pacer = threading.Thread(target=self.pace, daemon=True)

    def start(self):
        for t in self.threads:
            t.start()
        self.pacer.start()

    def pace(self):
        t0 = time.time()
        n = 0
        while not self.stop.is_set():
            due = t0 + n / self.rate
            if time.time() < due:
                time.sleep(min(0.05, due - time.time()))
                continue
            n += 1
            with self.cv:
                self.todo.append(n)
                self.cv.notify()
        with self.cv:
            self.cv.notify_all()
        self.seq = n

    def post(self, conn, seq):
        body = json.dumps({"query": "chaos-%d: what is the capital of France?" % seq})
        conn.request("POST", "/chat", body=body, headers={
            "Content-Type": "application/json", "Idempotency-Key": "chaos-%d" % seq})
        r = conn.getresponse()
        data = r.read()
        return r.status, data

    def submit(self, seq):
        start = time.time()
        conn = None
        while True:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                status, data = self.post(conn, seq)
            except (OSError, http.client.HTTPException):
                status, data = "error", b""
                if conn:
                    conn.close()
                conn = None
            with self.lock:
                self.statuses[status] += 1
            if status == 202:
                job = json.loads(data)["job_id"]
                with self.lock:
                    self.accepted[seq] = (job, time.time())
                break
            if time.time() - start > self.give_up:
                with self.lock:
                    self.gave_up.append(seq)
                break
            time.sleep(0.3)
        if conn:
            conn.close()

    def run(self):
        while True:
            with self.cv:
                while not self.todo and not (self.stop.is_set() and not self.pacer.is_alive()):
                    self.cv.wait(0.2)
                if not self.todo:
                    return
                seq = self.todo.popleft()
            self.submit(seq)

    def finish(self):
        self.stop.set()
        self.pacer.join()
        for t in self.threads:
            t.join()


# --------------------------------------------------------------------------- the run

def chaos_events(duration, short, rng):
    """(time offset, action, args) sorted: worker kills at random, Valkey killed and paused."""
    ev = []
    t = rng.uniform(1.5, 3.0)
    while t < duration - 2:
        ev.append((t, "kill_worker", (rng.randrange(3), rng.uniform(0.2, 1.5))))
        t += rng.uniform(2.0, 4.0) if short else rng.uniform(2.0, 5.0)
    kills = [0.3] if short else [0.25, 0.7]
    for k in kills:
        ev.append((duration * k, "kill_valkey", (1.0,)))
    ev.append((duration * (0.6 if short else 0.45), "pause_valkey", (3.0,)))
    return sorted(ev, key=lambda e: e[0])


def within_window(t, kills):
    return any(k - FSYNC_WINDOW <= t <= k + 0.05 for k in kills)


def log_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the bounded pass CI runs (~1 min)")
    ap.add_argument("--duration", type=float, help="seconds of load (default 120, short 30)")
    ap.add_argument("--rate", type=float, help="jobs a second (default 25, short 20)")
    ap.add_argument("--drain", type=float, help="seconds allowed to drain (default 90)")
    ap.add_argument("--faults", type=float, default=0.2, help="share of upstream calls faulted")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--build", default=os.environ.get("RAGQ_BUILD", os.path.join(ROOT, "build")))
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--no-aof", action="store_true",
                    help="Valkey without persistence: the run must FAIL (checks the checker)")
    ap.add_argument("--json", help="write the counts there too")
    a = ap.parse_args()
    duration = a.duration or (30.0 if a.short else 120.0)
    rate = a.rate or (20.0 if a.short else 25.0)
    drain = a.drain or (60.0 if a.short else 90.0)
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    for f in ("ragq-worker", "ngx_http_ragq_module.so"):
        if not os.path.exists(os.path.join(a.build, f)):
            sys.exit("chaos: %s/%s is not built (make)" % (a.build, f))

    tmp = tempfile.mkdtemp(prefix="ragq-chaos.")
    log("seed %d, %.0f s of load at %.0f jobs/s, %d%% upstream faults, scratch %s"
        % (seed, duration, rate, a.faults * 100, tmp))
    valkey = Valkey(tmp, aof=not a.no_aof)
    standin = nginx = workers = None
    cleanup_done = []

    def cleanup():
        if cleanup_done:
            return
        cleanup_done.append(1)
        for thing in (workers and workers.stop_all, nginx and nginx.stop,
                      standin and standin.stop, valkey.stop):
            if thing:
                try:
                    thing()
                except Exception as e:  # keep cleaning up the rest
                    log("cleanup: %r" % e)
        if not a.keep:
            subprocess.call(["rm", "-rf", tmp])
        else:
            log("kept %s" % tmp)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        valkey.start()
        standin = Standin(tmp, seed)
        standin.setup(a.faults)
        nginx = Nginx(tmp, a.build, valkey.port)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RAGQ_", "OPENAI_", "QDRANT_"))}
        env.update({
            "RAGQ_VALKEY_URL": "redis://127.0.0.1:%d" % valkey.port, "RAGQ_PREFIX": PREFIX,
            "OPENAI_BASE_URL": "http://127.0.0.1:%d/v1" % standin.port, "OPENAI_API_KEY": "k",
            "QDRANT_URL": "http://127.0.0.1:%d" % standin.port, "RAGQ_COLLECTION": COLLECTION,
            "RAGQ_RECLAIM_AFTER": "2s", "RAGQ_HTTP_TIMEOUT": "2s", "RAGQ_CONCURRENCY": "32",
            "RAGQ_CONNECT_TIMEOUT": "3s", "RAGQ_LOG_LEVEL": "info"})
        workers = Workers(tmp, a.build, env)
        workers.start_all()
        time.sleep(0.5)

        load = Load(nginx.port, rate)
        t0 = time.time()
        load.start()
        events = chaos_events(duration, a.short, rng)
        restarts = []  # (time, slot) of workers to start again
        outage_end = 0.0  # when Valkey last came back (kill or pause)
        counts = collections.Counter()
        while time.time() - t0 < duration:
            now = time.time() - t0
            while events and events[0][0] <= now:
                _, what, args = events.pop(0)
                if what == "kill_worker":
                    slot, after = args
                    workers.kill(slot)
                    restarts.append((time.time() + after, slot))
                    counts["worker SIGKILL"] += 1
                elif what == "kill_valkey":
                    log("Valkey: SIGKILL, restart from its AOF in %.1f s" % args[0])
                    valkey.kill()
                    counts["Valkey SIGKILL"] += 1
                    time.sleep(args[0])
                    valkey.start()
                    outage_end = time.time()
                    log("Valkey: back")
                elif what == "pause_valkey":
                    log("Valkey: SIGSTOP for %.1f s" % args[0])
                    valkey.pause()
                    counts["Valkey SIGSTOP"] += 1
                    time.sleep(args[0])
                    valkey.resume()
                    outage_end = time.time()
            for r in [r for r in restarts if r[0] <= time.time()]:
                restarts.remove(r)
                workers.start(r[1])
            workers.check(time.time() - outage_end < 10)
            time.sleep(0.05)
        for _, slot in restarts:
            workers.start(slot)
        load.finish()
        log("load over: %d sent, %d accepted; draining (up to %.0f s)"
            % (load.seq, len(load.accepted), drain))

        # Drain: every accepted job final, or the time is up.
        ids = {seq: job for seq, (job, _) in load.accepted.items()}
        r = Resp(valkey.port)
        status = {}
        deadline = time.time() + drain
        while True:
            workers.check(time.time() - outage_end < 10)
            pending = [s for s in ids if status.get(s) not in ("finished", "failed")]
            if not pending:
                break
            replies = r.pipeline([("HGET", "%s:job:%s" % (PREFIX, ids[s]), "status")
                                  for s in pending])
            for s, st in zip(pending, replies):
                status[s] = st if not isinstance(st, RespError) else "wrongtype"
            if time.time() > deadline:
                break
            time.sleep(0.5)
        workers.stop_all()

        # The counts.
        errors = r.pipeline([("HGET", "%s:job:%s" % (PREFIX, ids[s]), "error") for s in ids])
        causes = collections.Counter()
        for s, e in zip(ids, errors):
            if status.get(s) == "failed":
                try:
                    causes[json.loads(e)["code"]] += 1
                except (TypeError, ValueError, KeyError):
                    causes["?"] += 1
        dead = collections.Counter()
        for entry in r.cmd("XRANGE", "%s:dead" % PREFIX, "-", "+") or []:
            f = entry[1]
            dead[dict(zip(f[::2], f[1::2])).get("job")] += 1
        stream_left = r.cmd("XLEN", "%s:jobs" % PREFIX)
        pending_left = r.cmd("XPENDING", "%s:jobs" % PREFIX, "%s:workers" % PREFIX)[0]
        consumers = len(r.cmd("XINFO", "CONSUMERS", "%s:jobs" % PREFIX, "%s:workers" % PREFIX))
        r.close()

        finals = collections.defaultdict(list)  # job -> times of final writes that took
        for path in workers.logs:
            for m in LOG_FINAL_RE.finditer(open(path).read()):
                finals[m.group(2)].append(log_time(m.group(1)))
        tally = standin.tally()
        kills = valkey.kills

        lost, lost_window = [], []
        for s, (job, t_acc) in load.accepted.items():
            if status.get(s) not in ("finished", "failed"):
                (lost_window if within_window(t_acc, kills) else lost).append(
                    (s, job, status.get(s)))
        twice, twice_window = [], []
        for s, job in ids.items():
            times = sorted(finals.get(job, []))
            n = max(len(times), dead.get(job, 0))
            if n > 1:
                (twice_window if times and within_window(times[0], kills) else twice).append(
                    (s, job, n))
        chat_calls = [tally.get("chaos-%d" % s, 0) for s in ids]
        duplicated = sum(1 for c in chat_calls if c > 1)
        accepted_tags = {"chaos-%d" % s for s in ids}
        unaccepted_run = sorted(t for t in tally if t not in accepted_tags)

        crashed = nginx.crashes()
        report = collections.OrderedDict([
            ("seed", seed), ("duration_s", duration), ("rate", rate),
            ("chaos", dict(counts)),
            ("sent", load.seq), ("answers", {str(k): v for k, v in load.statuses.items()}),
            ("accepted", len(ids)),
            ("finished", sum(1 for s in ids if status.get(s) == "finished")),
            ("failed", sum(1 for s in ids if status.get(s) == "failed")),
            ("failed_causes", dict(causes)),
            ("lost", len(lost)), ("lost_in_fsync_window", len(lost_window)),
            ("duplicated", duplicated),
            ("chat_calls", sum(chat_calls)),
            ("finalized_twice", len(twice)),
            ("finalized_twice_in_fsync_window", len(twice_window)),
            ("gave_up_never_accepted", len(load.gave_up)),
            ("run_but_never_accepted", len(unaccepted_run)),
            ("stream_entries_left", stream_left), ("pending_left", pending_left),
            ("consumers_left", consumers),
            ("workers_died_by_themselves", len(workers.unexpected)),
            ("nginx_workers_crashed", len(crashed)),
        ])
        print(json.dumps(report, indent=2))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(report, f, indent=2)
        for what, items in (("LOST", lost), ("lost in the fsync window", lost_window),
                            ("FINALIZED TWICE", twice), ("finalized twice in the window",
                                                         twice_window)):
            for it in items[:10]:
                log("%s: chaos-%d job %s (%s)" % (what, it[0], it[1], it[2]))
        for slot, st, tail in workers.unexpected[:3]:
            log("worker %d exited with %s; its log ends:\n%s" % (slot, st, tail))
        for line in crashed[:3]:
            log("nginx: %s" % line)
        ok = (not lost and not twice and not workers.unexpected and stream_left == 0
              and pending_left == 0 and not crashed)
        log("%s: accepted %d, finished %d, failed %d %s, lost %d (+%d in the fsync window), "
            "duplicated %d, finalized twice %d (+%d in the window)"
            % ("PASS" if ok else "FAIL", report["accepted"], report["finished"],
               report["failed"], dict(causes), len(lost), len(lost_window), duplicated,
               len(twice), len(twice_window)))
        return 0 if ok else 1
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
