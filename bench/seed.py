#!/usr/bin/env python3
"""Creates jobs through POST /chat (so they have exactly the shape the server under test
writes) and prints their ids, one a line; used to pre-seed /job-status benchmarks.  With
--status IDS it instead reads each job of IDS once with GET /job-status (bench/profile's client).

--post only sends the POSTs and accepts any 2xx (bench/profile's client for the ceiling too).

Usage: seed.py PORT COUNT [CONNECTIONS]
       seed.py --post PORT COUNT [CONNECTIONS]
       seed.py --status IDS PORT [CONNECTIONS]
"""

import http.client
import json
import os
import sys
import threading

# The status a created job is answered with: 202 (ragq, the Lua baseline); the seed stack
# (FastAPI + RQ) answers 200.
OK_STATUS = int(os.environ.get("SEED_OK_STATUS", "202"))


def worker(port, count, out, errors, post_only=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(count):
        conn.request("POST", "/chat?query=seeded+question+number+%d" % i)
        resp = conn.getresponse()
        body = resp.read()
        if post_only and 200 <= resp.status < 300:
            continue
        if resp.status != OK_STATUS:
            errors.append("%d %s" % (resp.status, body[:200]))
            return
        out.append(json.loads(body)["job_id"])
    conn.close()


def reader(port, ids, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for jid in ids:
        conn.request("GET", "/job-status?job_id=" + jid)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            errors.append("%d %s" % (resp.status, body[:200]))
            return
    conn.close()


def status_main(argv):
    ids = [l.strip() for l in open(argv[0]) if l.strip()]
    port = int(argv[1])
    nconn = int(argv[2]) if len(argv) > 2 else 1
    errors = []
    threads = [threading.Thread(target=reader, args=(port, ids[k::nconn], errors))
               for k in range(nconn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.stderr.write("seed: GET /job-status failed: %s\n" % errors[0])
        sys.exit(1)


def main():
    if sys.argv[1] == "--status":
        return status_main(sys.argv[2:])
    args = sys.argv[1:]
    post_only = args[0] == "--post"
    if post_only:
        args = args[1:]
    port, count = int(args[0]), int(args[1])
    nconn = int(args[2]) if len(args) > 2 else 4
    out, errors, threads = [], [], []
    for k in range(nconn):
        n = count // nconn + (1 if k < count % nconn else 0)
        t = threading.Thread(target=worker, args=(port, n, out, errors, post_only))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    if errors:
        sys.stderr.write("seed: POST /chat failed: %s\n" % errors[0])
        sys.exit(1)
    sys.stdout.write("".join(i + "\n" for i in out))


if __name__ == "__main__":
    main()
