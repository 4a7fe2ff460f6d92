#!/usr/bin/env bash
# bench/worker-bench.sh: ragq-worker throughput against stand-ins that take
# a fixed time per call (default 100 ms; a job makes 3 calls: embed,
# retrieve, generate).  For each number of jobs in flight it queues N jobs,
# starts one worker with RAGQ_CONCURRENCY = that number, and reports jobs/s
# (first started_at to last ended_at) next to the ideal (in flight / job
# latency), CPU ms per job (utime+stime from /proc) and peak RSS (VmHWM).
#
#   bench/worker-bench.sh [inflight...]        default: 1 64 512
#   LATENCY_MS=100 JOBS_PER_SLOT=6 BUILD=build bench/worker-bench.sh
#
# Prints a Markdown table on stdout; progress on stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
LATENCY_MS=${LATENCY_MS:-100}
JOBS_PER_SLOT=${JOBS_PER_SLOT:-6}
MIN_JOBS=${MIN_JOBS:-20}
[ $# -gt 0 ] || set -- 1 64 512

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ragq-wbench.XXXXXX")
REDIS_PID= STANDIN_PID= WORKER_PID=
cleanup() {
    [ -n "$WORKER_PID" ] && kill -KILL "$WORKER_PID" 2>/dev/null || true
    [ -n "$STANDIN_PID" ] && kill "$STANDIN_PID" 2>/dev/null || true
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    [ -n "${KEEP_TMP:-}" ] && echo "kept $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

RPORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$RPORT" --save '' --appendonly no \
    --dir "$TMP" --logfile "$TMP/redis.log" >/dev/null &
REDIS_PID=$!
R="redis-cli -h 127.0.0.1 -p $RPORT"
for _ in $(seq 1 100); do [ "$($R PING 2>/dev/null)" = PONG ] && break; sleep 0.05; done

python3 "$ROOT/tests/standins/standin.py" --host 127.0.0.1 --port 0 \
    --latency-ms "$LATENCY_MS" --dim 64 --backlog 1024 >"$TMP/standin.out" 2>"$TMP/standin.err" &
STANDIN_PID=$!
for _ in $(seq 1 100); do grep -q '^ready' "$TMP/standin.out" 2>/dev/null && break; sleep 0.05; done
SPORT=$(awk '/^ready/ {print $2}' "$TMP/standin.out")
BASE="http://127.0.0.1:$SPORT"
curl -fsS -X PUT "$BASE/collections/docs" -H 'Content-Type: application/json' \
    -d '{"vectors":{"size":64,"distance":"Cosine"}}' >/dev/null
VEC=$(python3 -c 'import json; print(json.dumps([1.0]+[0.0]*63))')
curl -fsS -X PUT "$BASE/collections/docs/points?wait=true" -H 'Content-Type: application/json' \
    -d "{\"points\":[{\"id\":1,\"vector\":$VEC,\"payload\":{\"page_content\":\"The capital of France is Paris.\",\"metadata\":{\"source\":\"france.md\"}}}]}" >/dev/null

echo "| in flight | jobs | seconds | jobs/s | ideal jobs/s | % of ideal | worker CPU ms/job | worker peak RSS | stand-in CPU |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"

for C in "$@"; do
    N=$((C * JOBS_PER_SLOT)); [ "$N" -ge "$MIN_JOBS" ] || N=$MIN_JOBS
    P="b$C"
    echo "worker-bench: $C in flight, $N jobs, $LATENCY_MS ms per call" >&2
    # Queue every job first (one pipelined redis-cli), the module's way.
    python3 - "$P" "$N" <<'PY' | $R --pipe >/dev/null
import sys, os, time
p, n = sys.argv[1], int(sys.argv[2])
def cmd(*a):
    out = ["*%d\r\n" % len(a)]
    for x in a:
        x = str(x).encode()
        out.append("$%d\r\n" % len(x)); out.append(x.decode() + "\r\n")
    sys.stdout.write("".join(out))
ms = int(time.time() * 1000)
for i in range(n):
    jid = os.urandom(16).hex()
    cmd("HSET", "%s:job:%s" % (p, jid), "status", "queued", "query",
        "What is the capital of France? (%d)" % i, "top_k", 3, "collection", "docs",
        "tenant", "", "created_at", ms, "attempts", 0)
    cmd("XADD", "%s:jobs" % p, "*", "job", jid)
PY
    read -r SUT0 SST0 < <(awk '{print $14, $15}' "/proc/$STANDIN_PID/stat")
    RAGQ_VALKEY_URL="redis://127.0.0.1:$RPORT" RAGQ_PREFIX=$P RAGQ_CONCURRENCY=$C \
    OPENAI_BASE_URL="$BASE/v1" OPENAI_API_KEY=bench QDRANT_URL="$BASE" \
    RAGQ_COLLECTION=docs RAGQ_LOG_LEVEL=${WORKER_LOG_LEVEL:-warn} RAGQ_HTTP_TIMEOUT=60s \
        "$BUILD/ragq-worker" 2>"$TMP/worker-$C.log" &
    WORKER_PID=$!
    while [ "$($R XLEN "$P:jobs")" != 0 ]; do
        kill -0 "$WORKER_PID" 2>/dev/null || { cat "$TMP/worker-$C.log" >&2; exit 1; }
        sleep 0.1
    done
    read -r UT ST < <(awk '{print $14, $15}' "/proc/$WORKER_PID/stat")
    read -r SUT1 SST1 < <(awk '{print $14, $15}' "/proc/$STANDIN_PID/stat")
    HWM=$(awk '/^VmHWM/ {print $2 " " $3}' "/proc/$WORKER_PID/status")
    kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || true; WORKER_PID=
    TICK=$(getconf CLK_TCK)
    # Wall time from the first start to the last end, from the job hashes.
    $R --scan --pattern "$P:job:*" >"$TMP/keys"
    STATS=$(while read -r k; do echo "HMGET $k status started_at ended_at"; done <"$TMP/keys" \
        | $R | paste - - - | awk -v n="$N" '
            $1 == "finished" { f++; if (!s || $2 < s) s = $2; if ($3 > e) e = $3 }
            END { printf "%d %.0f %.0f", f, s, e }')
    read -r FIN START END <<<"$STATS"
    [ "$FIN" = "$N" ] || echo "worker-bench: only $FIN of $N jobs finished" >&2
    python3 - "$C" "$N" "$START" "$END" "$UT" "$ST" "$TICK" "$LATENCY_MS" "$HWM" \
        $((SUT1 + SST1 - SUT0 - SST0)) <<'PY'
import sys
c, n, s, e, ut, st, tick, lat = (float(x) for x in sys.argv[1:9])
hwm = sys.argv[9]
sticks = float(sys.argv[10])
secs = (e - s) / 1000.0
rate = n / secs if secs > 0 else 0
ideal = c / (3 * lat / 1000.0)
cpu_ms = (ut + st) * 1000.0 / tick / n
# The stand-in (Python) shares the 2 cores: its CPU share shows when it,
# not the worker, is the limit.
print("| %d | %d | %.2f | %.1f | %.1f | %.0f%% | %.3f | %s | %.0f%% |" % (c, n, secs, rate,
      ideal, 100 * rate / ideal, cpu_ms, hwm, 100 * sticks / tick / secs if secs else 0))
PY
    $R --scan --pattern "$P:*" | xargs -r -n 500 $R DEL >/dev/null
done
