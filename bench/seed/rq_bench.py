#!/usr/bin/env python3
"""The seed stack's worker side of `make bench`: RQ's default (forking) Worker, one job at a
time per process, against the same 100 ms stand-ins as ragq-worker (bench/run starts
redis-server and the stand-ins and passes their ports).  For each point N it starts N worker
processes (bench/seed/worker.py), waits until all N are registered, enqueues N x rounds jobs with
RQ's own enqueue (bench/seed/jobs.py's `answer`), waits until every job is finished or failed,
and reads throughput from the jobs' started_at/ended_at, CPU from the worker processes (their own
and their reaped work horses': utime + stime + cutime + cstime) and memory from /proc.
Writes one JSON document with every point.

Usage: rq_bench.py --redis PORT --chat-url URL --embed-url URL --qdrant-url URL --out FILE
                   [--points 1,16,64] [--rounds 8] [--max-jobs 1024] [--standin-pids P,P]
"""

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import time

from redis import Redis
from rq import Queue

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from worker_bench import QUESTIONS, ticks  # noqa: E402


def tree_ticks(pid):
    """(utime + stime, cutime + cstime): the process, and its reaped children (work horses)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = [int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15]]
    return fields[0] + fields[1], fields[2] + fields[3]


def children(pid):
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def status_kb(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def epoch(ts):
    if not ts:
        return None
    ts = ts.decode() if isinstance(ts, bytes) else ts
    return datetime.datetime.strptime(ts.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def run_point(a, r, n):
    hz = os.sysconf("SC_CLK_TCK")
    njobs = min(a.max_jobs, max(10, n * a.rounds))
    r.flushall()
    env = dict(os.environ, REDIS_URL="redis://127.0.0.1:%d/0" % a.redis,
               OPENAI_BASE_URL=a.chat_url, OPENAI_API_KEY="bench",
               RAGQ_EMBED_BASE_URL=a.embed_url, RAGQ_EMBED_API_KEY="bench",
               QDRANT_URL=a.qdrant_url, RAGQ_COLLECTION="documents",
               PYTHONPATH=HERE)
    log = open(os.path.join(a.tmp, "rq-%d.log" % n), "wb")
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "worker.py"), "bench-%d" % i],
                              env=env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE)
             for i in range(n)]
    try:
        t0 = time.time()
        while r.scard("rq:workers") < n:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("an RQ worker exited at start (see %s)" % log.name)
            if time.time() - t0 > 120:
                raise RuntimeError("RQ workers not registered after 120 s")
            time.sleep(0.1)
        time.sleep(0.5)
        startup_s = time.time() - t0
        main_rss = sorted(status_kb(p.pid, "VmRSS") for p in procs)
        c0 = [sum(x) for x in zip(*(tree_ticks(p.pid) for p in procs))]
        st0 = [ticks(x) for x in a.standins]
        rc0 = redis_cpu(r)
        q = Queue(connection=r)
        t_start = time.time()
        with r.pipeline() as pipe:
            jobs = q.enqueue_many([Queue.prepare_data("jobs.answer", (QUESTIONS[i % len(QUESTIONS)],))
                                   for i in range(njobs)], pipeline=pipe)
            pipe.execute()
        ids = [j.id for j in jobs]
        deadline = t_start + max(60.0, 4 * njobs / (min(n, njobs) / 0.3))
        peak_pss = peak_rss = 0
        last_mem = 0.0
        timed_out = False
        while True:
            done = r.zcard("rq:finished:default") + r.zcard("rq:failed:default")
            if time.time() - last_mem >= 0.5:
                horses = [c for p in procs for c in children(p.pid)]
                pids = [p.pid for p in procs] + horses
                peak_pss = max(peak_pss, sum(pss_kb(x) for x in pids))
                peak_rss = max(peak_rss, sum(status_kb(x, "VmRSS") for x in pids))
                last_mem = time.time()
            if done >= njobs:
                break
            if time.time() > deadline:
                timed_out = True
                break
            time.sleep(0.05)
        c1 = [sum(x) for x in zip(*(tree_ticks(p.pid) for p in procs))]
        st1 = [ticks(x) for x in a.standins]
        rc1 = redis_cpu(r)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()

    with r.pipeline() as pipe:
        for j in ids:
            pipe.hmget("rq:job:" + j, "status", "started_at", "ended_at")
        rows = pipe.execute()
    finished = sum(1 for x in rows if x[0] == b"finished")
    failed = sum(1 for x in rows if x[0] == b"failed")
    starts = [epoch(x[1]) for x in rows if x[1]]
    ends = [epoch(x[2]) for x in rows if x[2] and x[0] in (b"finished", b"failed")]
    span = max(ends) - min(starts) if starts and ends else None
    done = finished + failed
    durs = sorted(1000 * (epoch(x[2]) - epoch(x[1])) for x in rows if x[1] and x[2])
    pct = (lambda q_: durs[min(len(durs) - 1, int(q_ * len(durs)))] if durs else None)
    ideal = min(n, njobs) / 0.3
    cpu_main_s = (c1[0] - c0[0]) / hz
    cpu_horses_s = (c1[1] - c0[1]) / hz
    cpu_s = cpu_main_s + cpu_horses_s
    out = {
        "processes": n, "jobs": njobs, "finished": finished, "failed": failed,
        "timed_out": timed_out, "span_s": span,
        "jobs_per_s": done / span if span else None, "ideal_per_s": ideal,
        "ratio": (done / span) / ideal if span else None,
        "job_ms_p50": pct(0.5), "job_ms_p99": pct(0.99),
        "cpu_s": cpu_s, "cpu_ms_per_job": cpu_s * 1000.0 / done if done else None,
        "cpu_main_s": cpu_main_s, "cpu_horses_s": cpu_horses_s,
        "rss_per_process_kb_median": main_rss[len(main_rss) // 2] if main_rss else None,
        "rss_total_kb_peak": peak_rss, "pss_total_kb_peak": peak_pss,
        "startup_s": startup_s,
        "standin_cpu_pct": [100.0 * (b - a_) / hz / span if span else None
                            for a_, b in zip(st0, st1)],
        "redis_cpu_ms_per_job": (rc1 - rc0) * 1000.0 / done if done else None,
    }
    sys.stderr.write("rq point %s\n" % json.dumps(out))
    return out


def redis_cpu(r):
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", type=int, required=True)
    ap.add_argument("--chat-url", required=True)
    ap.add_argument("--embed-url", required=True)
    ap.add_argument("--qdrant-url", required=True)
    ap.add_argument("--points", default="1,16,64")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tmp", default="/tmp")
    ap.add_argument("--standin-pids", default="")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--max-jobs", type=int, default=1024)
    a = ap.parse_args()
    a.standins = [int(p) for p in a.standin_pids.split(",") if p]
    r = Redis(port=a.redis)
    points = [run_point(a, r, int(x)) for x in a.points.split(",")]
    with open(a.out, "w") as f:
        json.dump({"call_ms": 100, "worker": "rq %s, default forking Worker" % __import__("rq").__version__,
                   "points": points}, f, indent=1)


if __name__ == "__main__":
    main()
