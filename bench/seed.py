#!/usr/bin/env python3
"""Creates jobs through POST /chat (so they have exactly the shape the server under test
writes) and prints their ids, one a line; used to pre-seed /job-status benchmarks.

Usage: seed.py PORT COUNT [CONNECTIONS]
"""

import http.client
import json
import sys
import threading


def worker(port, count, out, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(count):
        conn.request("POST", "/chat?query=seeded+question+number+%d" % i)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 202:
            errors.append("%d %s" % (resp.status, body[:200]))
            return
        out.append(json.loads(body)["job_id"])
    conn.close()


def main():
    port, count = int(sys.argv[1]), int(sys.argv[2])
    nconn = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    out, errors, threads = [], [], []
    for k in range(nconn):
        n = count // nconn + (1 if k < count % nconn else 0)
        t = threading.Thread(target=worker, args=(port, n, out, errors))
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
