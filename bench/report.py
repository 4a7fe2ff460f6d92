#!/usr/bin/env python3
"""Turns one bench/run's raw numbers (bench/raw/) into bench/RESULTS.md, bench/raw/*.csv and
the worker throughput plot: medians over the interleaved runs, ratios to the ceiling measured in
the same run, and each target marked met or not met with the measured value.

Usage: report.py BENCH_DIR
"""

import csv
import json
import os
import re
import statistics
import subprocess
import sys

# Issue 13's "Done when" (the targets table marks each met or not met).
GOAL_CONNS = (50, 200)
GOAL_REPS = 3
GOAL_CHAT_CEIL = 0.75     # /chat req/s ÷ nginx `return 200`
GOAL_CHAT_LUA = 2.5       # /chat req/s ÷ the Lua peer (old data model)
GOAL_STATUS_CEIL = 0.80   # /job-status req/s ÷ `return 200`
GOAL_SEED_CPU = 20.0      # seed stack's server + Valkey CPU per request ÷ ragq's
GOAL_NGINX_US = 13.0      # nginx CPU µs per /chat
GOAL_VALKEY_US = 4.0      # Valkey CPU µs per /chat
GOAL_WORKER_MS = 0.2      # worker CPU ms per job, not streamed
GOAL_WORKER_STREAM_MS = 0.4  # worker CPU ms per job, streamed

TARGET_NAMES = {"module": "ragq module", "lua": "Lua (lua-resty-redis)",
                "ceiling": "nginx `return 200`",
                "seed": "seed: FastAPI + RQ (2 uvicorn workers)"}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, fmt="%.0f", none="–"):
    return none if x is None else fmt % x


def load_env(raw):
    env = {}
    with open(os.path.join(raw, "env.txt")) as fh:
        for line in fh:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                env[k] = v
    return env


def load_runs(raw):
    path = os.path.join(raw, "module-runs.jsonl")
    if not os.path.exists(path):
        return []
    runs = []
    with open(path) as fh:
        for line in fh:
            row = json.loads(line)
            w = row["wrk"]
            nerr = sum(w[k] for k in ("err_connect", "err_read", "err_write", "err_status",
                                      "err_timeout"))
            cpu = row["redis_cpu_after"] - row["redis_cpu_before"]
            runs.append({
                "rep": row["rep"], "endpoint": row["endpoint"],
                "conns": row["conns"], "target": row["target"],
                "requests": w["requests"], "rps": w["rps"],
                "p50_ms": w["lat_p50_us"] / 1000.0, "p99_ms": w["lat_p99_us"] / 1000.0,
                "max_ms": w["lat_max_us"] / 1000.0, "errors": nerr,
                "non2xx": w["err_status"],
                "valkey_cpu_us_per_req": (cpu * 1e6 / w["requests"]
                                          if row["target"] != "ceiling" and w["requests"]
                                          else None),
                "nginx_cpu_us_per_req": ((row["nginx_cpu_ns_after"] - row["nginx_cpu_ns_before"])
                                         / 1e3 / w["requests"]
                                         if "nginx_cpu_ns_after" in row and w["requests"]
                                         else None),
                "wrk_cpu_us_per_req": (row["wrk_cpu_ms"] * 1e3 / w["requests"]
                                       if "wrk_cpu_ms" in row and w["requests"] else None),
                # Recorded since issue 13 (older raw data has no command counts).
                "valkey_cmds_per_req": ((row["redis_calls_after"] - row["redis_calls_before"])
                                        / w["requests"]
                                        if "redis_calls_after" in row and w["requests"]
                                        and row["target"] != "ceiling" else None),
                "rss_before_kb": row["rss_before_kb"],
                "rss_after_kb": row["rss_after_kb"],
            })
    return runs


def write_csv(path, rows, cols):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


class Targets:
    def __init__(self):
        self.rows = []
        self.gates = []

    def add(self, name, value, goal, ok, note="", done_when=False):
        self.rows.append((name, value, goal, ok, note))
        if done_when:
            self.gates.append((name, ok))

    def summary(self):
        met = [n for n, ok in self.gates if ok]
        miss = [n for n, ok in self.gates if ok is False]
        unmeasured = [n for n, ok in self.gates if ok is None]
        out = ("Issue 13's *Done when* (rows marked †): **%d of %d met**" %
               (len(met), len(self.gates)))
        if miss:
            out += "; not met: " + "; ".join(miss)
        if unmeasured:
            out += "; not measured: " + "; ".join(unmeasured)
        return out + "."

    def md(self):
        out = ["| target | measured | goal | |", "|---|---|---|---|"]
        gates = {n for n, _ in self.gates}
        for name, value, goal, ok, note in self.rows:
            if name in gates:
                name += " †"
            mark = "not measured" if ok is None else ("**met**" if ok else "**not met**")
            out.append("| %s | %s | %s | %s%s |" % (name, value, goal, mark,
                                                  (" " + note) if note else ""))
        return "\n".join(out)


def main():
    bench = sys.argv[1]
    raw = os.path.join(bench, "raw")
    env = load_env(raw)
    runs = load_runs(raw)
    cols = ["rep", "endpoint", "conns", "target", "requests", "rps", "p50_ms", "p99_ms",
            "max_ms", "errors", "non2xx", "valkey_cpu_us_per_req", "nginx_cpu_us_per_req",
            "wrk_cpu_us_per_req", "valkey_cmds_per_req",
            "rss_before_kb",
            "rss_after_kb"]
    write_csv(os.path.join(raw, "module-runs.csv"), runs, cols)

    targets_present = [t for t in ("module", "lua", "ceiling", "seed")
                       if any(r["target"] == t for r in runs)]
    conns = sorted({r["conns"] for r in runs})
    cells = {}
    for ep in ("chat", "status"):
        for c in conns:
            for t in targets_present:
                rs = [r for r in runs if (r["endpoint"], r["conns"], r["target"]) == (ep, c, t)]
                if not rs:
                    continue
                cells[(ep, c, t)] = {
                    "n": len(rs),
                    "rps": med(r["rps"] for r in rs),
                    "rps_all": [round(r["rps"]) for r in rs],
                    "p50_ms": med(r["p50_ms"] for r in rs),
                    "p99_ms": med(r["p99_ms"] for r in rs),
                    "errors": sum(r["errors"] for r in rs),
                    "valkey_us": med(r["valkey_cpu_us_per_req"] for r in rs),
                    "nginx_us": med(r["nginx_cpu_us_per_req"] for r in rs),
                    "wrk_us": med(r["wrk_cpu_us_per_req"] for r in rs),
                    "valkey_cmds": med(r["valkey_cmds_per_req"] for r in rs),
                }
    # Other work on the machine comes in bursts; runs next to each other in
    # time see the same burst, so the ratio of each repetition's adjacent runs
    # is steadier than the ratio of medians.  Targets use the median of those.
    def paired(ep, c, num, den):
        rs = []
        for rep in sorted({r["rep"] for r in runs}):
            a = [r for r in runs if (r["endpoint"], r["conns"], r["target"], r["rep"]) ==
                 (ep, c, num, rep)]
            b = [r for r in runs if (r["endpoint"], r["conns"], r["target"], r["rep"]) ==
                 (ep, c, den, rep)]
            if a and b and b[0]["rps"]:
                rs.append(a[0]["rps"] / b[0]["rps"])
        return med(rs), rs

    summary = {"%s c%d %s" % k: v for k, v in cells.items()}

    tg = Targets()
    L = []
    L.append("# ragq benchmarks")
    L.append("")
    L.append("Written by `make bench` (`bench/run`); raw numbers in [`raw/`](raw/). "
             "Re-run to reproduce; every number below comes from one run of the script, and "
             "ratios compare targets measured in that same run.")
    L.append("")
    L.append("## Machine and run")
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    for k, label in (("date", "date (UTC)"), ("nproc", "nproc"), ("cpu", "CPU"),
                     ("kernel", "kernel"), ("nginx", "nginx"), ("redis", "redis-server"),
                     ("wrk", "wrk"), ("lua_module", "libnginx-mod-http-lua"),
                     ("lua_redis", "lua-nginx-redis (lua-resty-redis)"),
                     ("lua_cjson", "lua-cjson"), ("uvloop", "stand-in uvloop"),
                     ("py_fastapi", "seed: python3-fastapi"), ("py_starlette", "seed: starlette"),
                     ("py_uvicorn", "seed: python3-uvicorn"),
                     ("seed_uvicorn", "seed: uvicorn event loop / HTTP parser"),
                     ("py_httptools", "seed: python3-httptools"), ("py_rq", "seed: python3-rq"),
                     ("py_redis", "seed: python3-redis"),
                     ("py_hiredis", "seed: hiredis parser (python3-hiredis)"),
                     ("py_requests", "seed worker: python3-requests"),
                     ("git", "git commit"), ("loadavg_start", "load average at start"),
                     ("loadavg_end", "load average at end"),
                     ("total_seconds", "bench wall time (s)")):
        L.append("| %s | %s |" % (label, env.get(k, "?")))
    L.append("")
    L.append("Everything runs on the same %s-core machine: wrk, nginx, redis-server, the "
             "stand-ins and the worker compete for the same CPUs, so absolute numbers are "
             "lower than on a dedicated load generator; the ratios are what to read. Other work on "
             "the machine during the run (see the load averages) adds noise to every number; "
             "the instruction counts of the profile section do not depend on it." %
             env.get("nproc", "?"))
    note = os.environ.get("BENCH_NOTE") or env.get("note")
    if note:
        L.append("")
        L.append("**Note on this run:** %s" % note)
        L.append("")

    targets_at = len(L)

    # ---------------------------------------------------------------- module
    L.append("## Module: `POST /chat` and `GET /job-status`")
    L.append("")
    dur = env.get("duration", "?")
    L.append("Exact commands (ports are picked free at run time):")
    L.append("")
    L.append("```")
    L.append("wrk -t2 -c{%s} -d%ss --latency -s bench/wrk/chat.lua   http://127.0.0.1:PORT"
             % (",".join(map(str, conns)), dur))
    L.append("wrk -t2 -c{%s} -d%ss --latency -s bench/wrk/status.lua http://127.0.0.1:PORT"
             % (",".join(map(str, conns)), dur))
    L.append("```")
    L.append("")
    L.append("- Three nginx servers, identical except for the two locations, each "
             "`worker_processes 2`, `access_log off`, keep-alive: **module** "
             "(`ragq_enqueue` / `ragq_status`), **Lua** (`bench/lua/ragq_bench.lua`: "
             "lua-resty-redis, `set_keepalive` pooling, same JSON, random 128-bit ids from "
             "/dev/urandom; it does the Valkey work the module did before issue 13's one-`XADD` "
             "enqueue, on purpose: MULTI / HSET of a 7-field job hash / XADD / XLEN / EXEC per "
             "`/chat` and one HGETALL per `/job-status`, counted in each run's \"Valkey "
             "commands/req\" column), **ceiling** "
             "(`return 200` with a body of the same length: /chat %s B, /job-status %s B, "
             "taken from the %s's replies)." % (env.get("chat_body_bytes", "?"),
                                                 env.get("status_body_bytes", "?"),
                                                 env.get("body_reference", "?")))
    if "seed" in targets_present:
        L.append("- **seed**: the Python design ragq replaces, rebuilt as it was "
                 "(`bench/seed/app.py`): FastAPI + RQ on its own redis-server, `POST /chat` = "
                 "RQ's `Queue.enqueue`, `GET /job-status` = RQ's `Job.fetch` + `job.result`, "
                 "`async def` handlers, uvicorn `--workers 2` (%s), access log off as in the "
                 "nginx servers. Its /chat answers 200 where ragq answers 202 and its ids are "
                 "UUIDs; its bodies are its own (no padding). Its \"server CPU\" is every "
                 "uvicorn process (supervisor + 2 workers)." % env.get("seed_uvicorn", "?"))
    if "shape_check" in env:
        L.append("- `/job-status` JSON keys, module vs Lua (checked each run): %s." %
                 env["shape_check"])
    L.append("- Module and Lua each have their own redis-server. `/job-status` reads "
             "%s jobs created through each server's own `/chat` just before (ids "
             "round-robin, `bench/wrk/status.lua`); before every `/chat` run its redis is "
             "FLUSHALLed so memory stays bounded." % env.get("seed", "?"))
    L.append("- Order: %s repetitions of (status c%s for module, Lua, ceiling (and seed); then chat "
             "the same), i.e. interleaved A B C A B C; a 1 s warm-up of each first. "
             "req/s, p50 and p99 are medians over the repetitions; ratios are the median of "
             "the per-repetition ratios of adjacent runs (steadier when other work on the "
             "machine comes and goes)." % (env.get("reps", "?"), "/c".join(map(str, conns))))
    L.append("- Valkey CPU per request: `INFO cpu` (used_cpu_sys + used_cpu_user) delta over "
             "the run ÷ requests. Server (nginx) CPU per request: CPU time of the nginx workers "
             "(`/proc/PID/schedstat`) over the run ÷ requests; it hardly depends on other "
             "load on the machine, so its ratio to the ceiling's is the steadiest estimate of "
             "the throughput ratio when nginx is CPU-bound.")
    L.append("")
    if not runs:
        L.append("No module runs were recorded.")
    for ep, title in (("chat", "POST /chat"), ("status", "GET /job-status")):
        L.append("### %s" % title)
        L.append("")
        L.append("| conns | target | req/s (median) | runs | ratio to ceiling (median of "
                 "per-repetition ratios) | p50 ms | p99 ms | server (nginx) CPU µs/req "
                 "| ceiling's ÷ this CPU/req | Valkey CPU µs/req | Valkey commands/req "
                 "| errors |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c in conns:
            ceil = cells.get((ep, c, "ceiling"))
            for t in targets_present:
                x = cells.get((ep, c, t))
                if not x:
                    continue
                ratio, _ = paired(ep, c, t, "ceiling")
                cr = (ceil["nginx_us"] / x["nginx_us"]
                      if ceil and ceil["nginx_us"] and x["nginx_us"] else None)
                L.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                    c, TARGET_NAMES[t], f(x["rps"]), " / ".join(map(str, x["rps_all"])),
                    f(ratio, "%.2f"), f(x["p50_ms"], "%.2f"), f(x["p99_ms"], "%.2f"),
                    f(x["nginx_us"], "%.1f"), f(cr, "%.2f"),
                    f(x["valkey_us"], "%.1f"), f(x["valkey_cmds"], "%.2f"), x["errors"]))
            ml, mls = paired(ep, c, "module", "lua")
            if ml:
                L.append("| %d | module ÷ Lua | **%.2f×** | %s | | | | | | | | |" % (
                    c, ml, " / ".join("%.2f" % x for x in mls)))
            ms, mss = paired(ep, c, "module", "seed")
            if ms:
                L.append("| %d | module ÷ seed | **%.1f×** | %s | | | | | | | | |" % (
                    c, ms, " / ".join("%.1f" % x for x in mss)))
        L.append("")

    # Where the CPU goes per request, every process of the run: on a machine
    # where wrk, nginx and Valkey share the cores, req/s ratios follow the
    # ratios of these totals, not nginx's alone.
    if any(x.get("wrk_us") for x in cells.values()):
        L.append("### CPU per request, all processes")
        L.append("")
        L.append("Median µs of CPU per request of nginx's workers, Valkey and the wrk client "
                 "(the client's from the `times` builtin around each wrk). With all three on "
                 "the same %s cores, throughput ratios tend to the ratios of the totals when the run is CPU-bound: "
                 "`estimate ÷ Lua` = Lua's total ÷ the module's; `best possible ÷ Lua` "
                 "= Lua's total ÷ (ceiling's total + the module's Valkey CPU), i.e. what a "
                 "module that cost nginx nothing above `return 200` would reach; `best possible "
                 "÷ ceiling` the same against the ceiling: the most a module can reach on this "
                 "machine while Valkey spends what it spends per request." %
                 env.get("nproc", "?"))
        L.append("")
        L.append("| endpoint | conns | target | server (nginx) | Valkey | wrk | total | CPU-bound estimate ÷ ceiling "
                 "| CPU-bound estimate ÷ Lua | best possible ÷ Lua | best possible ÷ ceiling |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for ep in ("chat", "status"):
            for c in conns:
                tot = {}
                for t in targets_present:
                    x = cells.get((ep, c, t))
                    if x and x["nginx_us"] is not None and x["wrk_us"] is not None:
                        tot[t] = x["nginx_us"] + (x["valkey_us"] or 0) + x["wrk_us"]
                for t in targets_present:
                    x = cells.get((ep, c, t))
                    if t not in tot:
                        continue
                    pc = tot["ceiling"] / tot[t] if "ceiling" in tot else None
                    pl = tot["lua"] / tot[t] if "lua" in tot and t == "module" else None
                    best = (tot["lua"] / (tot["ceiling"] + (x["valkey_us"] or 0))
                            if t == "module" and "lua" in tot and "ceiling" in tot else None)
                    bestc = (tot["ceiling"] / (tot["ceiling"] + (x["valkey_us"] or 0))
                             if t == "module" and "ceiling" in tot else None)
                    L.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                        ep, c, TARGET_NAMES[t], f(x["nginx_us"], "%.1f"),
                        f(x["valkey_us"], "%.1f"), f(x["wrk_us"], "%.1f"), f(tot[t], "%.1f"),
                        f(pc, "%.2f"), f(pl, "%.2f×"), f(best, "%.2f×"), f(bestc, "%.2f")))
        L.append("")

    # The seed stack: what ragq replaces, per request, server + Valkey (the
    # client's CPU is the same program for both and is left out).
    seed_cpu = {}
    if "seed" in targets_present and "module" in targets_present:
        L.append("### ragq vs the seed stack (FastAPI + RQ): server + Valkey CPU per request")
        L.append("")
        L.append("Median µs of CPU per request of the server processes (nginx workers; the "
                 "seed's uvicorn supervisor and 2 workers) plus its redis-server, from the same "
                 "runs as above; `seed ÷ ragq` is how many times less CPU ragq spends on the "
                 "same request. The throughput ratio (`module ÷ seed` above) is capped by "
                 "`return 200` ÷ seed on this machine, since wrk shares the cores.")
        L.append("")
        L.append("| endpoint | conns | seed server | seed Valkey | seed total | ragq nginx "
                 "| ragq Valkey | ragq total | seed ÷ ragq | req/s seed ÷ ragq |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for ep in ("chat", "status"):
            for c in conns:
                sd, md = cells.get((ep, c, "seed")), cells.get((ep, c, "module"))
                if not sd or not md or sd["nginx_us"] is None or md["nginx_us"] is None:
                    continue
                st = sd["nginx_us"] + (sd["valkey_us"] or 0)
                mt = md["nginx_us"] + (md["valkey_us"] or 0)
                seed_cpu[(ep, c)] = (st / mt if mt else None, st, mt)
                rr, _ = paired(ep, c, "seed", "module")
                L.append("| %s | %d | %.1f | %s | %.1f | %.1f | %s | %.1f | **%s** | %s |" % (
                    "/chat" if ep == "chat" else "/job-status", c, sd["nginx_us"],
                    f(sd["valkey_us"], "%.1f"), st, md["nginx_us"], f(md["valkey_us"], "%.1f"),
                    mt, f(st / mt if mt else None, "%.1f×"), f(rr, "%.3f")))
        L.append("")

    # RSS across repetitions: after the last run of each rep.
    L.append("### nginx worker memory")
    L.append("")
    L.append("Sum of VmRSS of the 2 nginx workers (the seed: its 2 uvicorn workers) (kB): "
             "before the first measured run and after each repetition (after its last run).")
    L.append("")
    reps = sorted({r["rep"] for r in runs})
    L.append("| target | before | " + " | ".join("after rep %d" % i for i in reps) + " |")
    L.append("|---|---|" + "---|" * len(reps))
    rss_series = {}
    for t in targets_present:
        rs = [r for r in runs if r["target"] == t]
        first = rs[0]["rss_before_kb"] if rs else None
        after = [[r for r in rs if r["rep"] == i][-1]["rss_after_kb"] for i in reps]
        rss_series[t] = {"before": first, "after": after}
        L.append("| %s | %s | %s |" % (TARGET_NAMES[t], first, " | ".join(map(str, after))))
    L.append("")

    # Module targets.
    def ratio_target(name, ep, c, num, den, goal, ok, unit="", done_when=True):
        r, rs = paired(ep, c, num, den)
        a, b = cells.get((ep, c, num)), cells.get((ep, c, den))
        note = ""
        if a and b and a["nginx_us"] and b["nginx_us"]:
            cr = b["nginx_us"] / a["nginx_us"]
            note = "by nginx CPU/request: %.2f%s, %s" % (cr, unit,
                                                       "met" if ok(cr) else "not met")
        if r is None:
            tg.add(name, "–", goal, None, done_when=done_when)
        else:
            tg.add(name, "%.2f%s (runs: %s)" % (r, unit, ", ".join("%.2f" % x for x in rs)),
                   goal, ok(r), ("(" + note + ")") if note else "", done_when=done_when)

    # Issue 13's "Done when": every goal at c50 AND c200, medians of >= 3
    # interleaved repetitions; a concurrency not measured shows as such.
    gconns = sorted(set(conns) | set(GOAL_CONNS))
    cell_n = [cells[(ep, c, t)]["n"] if (ep, c, t) in cells else 0
              for ep in ("chat", "status") for c in GOAL_CONNS
              for t in ("module", "lua", "ceiling")]
    tg.add("interleaved repetitions per median (module, Lua, ceiling; both endpoints; c%s)" %
           "/c".join(map(str, GOAL_CONNS)),
           "%d (fewest of any cell)" % min(cell_n) if runs else "–", "≥ %d" % GOAL_REPS,
           min(cell_n) >= GOAL_REPS if runs else None, done_when=True)
    for c in gconns:
        ratio_target("`/chat` ÷ ceiling, c%d" % c, "chat", c, "module", "ceiling",
                     "≥ %.2f" % GOAL_CHAT_CEIL, lambda r: r >= GOAL_CHAT_CEIL)
        ratio_target("`/chat` ÷ Lua, c%d" % c, "chat", c, "module", "lua",
                     "≥ %.1f×" % GOAL_CHAT_LUA, lambda r: r >= GOAL_CHAT_LUA, "×")
    for c in gconns:
        ratio_target("`/job-status` ÷ ceiling, c%d" % c, "status", c, "module", "ceiling",
                     "≥ %.2f" % GOAL_STATUS_CEIL, lambda r: r >= GOAL_STATUS_CEIL)
    # CPU per /chat, the enqueue's budget: nginx (the module's workers) and
    # Valkey, medians of the same runs.
    for c in gconns:
        m, ce = cells.get(("chat", c, "module")), cells.get(("chat", c, "ceiling"))
        v = m and m["nginx_us"]
        tg.add("nginx CPU per `/chat`, c%d" % c,
               "%.1f µs%s" % (v, (" (`return 200`: %.1f µs)" % ce["nginx_us"])
                              if ce and ce["nginx_us"] else "") if v else "–",
               "≤ %g µs" % GOAL_NGINX_US, v <= GOAL_NGINX_US if v else None, done_when=True)
        v = m and m["valkey_us"]
        tg.add("Valkey CPU per `/chat`, c%d" % c,
               ("%.1f µs" % v + (" (%.2f commands)" % m["valkey_cmds"]
                                 if m["valkey_cmds"] is not None else "")) if v else "–",
               "≤ %g µs" % GOAL_VALKEY_US, v <= GOAL_VALKEY_US if v else None,
               done_when=True)
    # The Lua peer stands for "what you would otherwise write" against the
    # data model ragq had before issue 13 (MULTI/HSET/XADD/XLEN/EXEC, then
    # HGETALL): counted, so a change to it cannot slip by.
    lcmds = {ep: med(cells[(ep, c, "lua")]["valkey_cmds"] for c in conns
                     if (ep, c, "lua") in cells) for ep in ("chat", "status")}
    # a gate: "not measured" without the Lua peer's counts
    ok = (None if lcmds["chat"] is None or lcmds["status"] is None else
          abs(lcmds["chat"] - 5) < 0.1 and abs(lcmds["status"] - 1) < 0.1)
    tg.add("Lua peer does the old model's Valkey work: commands per `/chat` / "
           "`/job-status`",
           "%s / %s" % (f(lcmds["chat"], "%.2f"), f(lcmds["status"], "%.2f")),
           "5 (MULTI/HSET/XADD/XLEN/EXEC) / 1 (HGETALL)", ok, done_when=True)
    for ep in ("chat", "status"):
        for c in conns:
            m = cells.get((ep, c, "module"))
            ce = cells.get((ep, c, "ceiling"))
            name = "p99 `/%s` ÷ ceiling p99, c%d" % ("chat" if ep == "chat" else "job-status", c)
            if m and ce and ce["p99_ms"]:
                r = m["p99_ms"] / ce["p99_ms"]
                tg.add(name, "%.2f× (%.2f vs %.2f ms)" % (r, m["p99_ms"], ce["p99_ms"]),
                       "≤ 2×", r <= 2.0)
            else:
                tg.add(name, "–", "≤ 2×", None)
    if "module" in rss_series and len(rss_series["module"]["after"]) >= 2:
        a = rss_series["module"]["after"]
        growth = a[-1] - a[0]
        # Allocator noise is a few pages; growth means a leak per request.
        tg.add("nginx worker RSS growth, rep 1 → rep %d" % len(a),
               "%+d kB (%s kB)" % (growth, " → ".join(map(str, a))), "≤ +1024 kB",
               growth <= 1024)
    else:
        tg.add("nginx worker RSS growth (needs 2+ repetitions)", "–", "none", None)
    for ep in ("chat", "status"):
        for c in gconns:
            name = "server + Valkey CPU per request, seed ÷ ragq, `/%s` c%d" % (
                "chat" if ep == "chat" else "job-status", c)
            v = seed_cpu.get((ep, c))
            if v and v[0] is not None:
                tg.add(name, "%.1f× (%.0f vs %.1f µs)" % v, "≥ %g×" % GOAL_SEED_CPU,
                       v[0] >= GOAL_SEED_CPU, done_when=True)
            else:
                tg.add(name, "–", "≥ %g×" % GOAL_SEED_CPU, None, done_when=True)
    apath = os.path.join(raw, "nginx-alerts-module.txt")
    if os.path.exists(apath):
        alerts = [l for l in open(apath) if l.strip()]
        tg.add("module nginx `[alert]`/`[crit]` log lines (e.g. worker crashes)",
               str(len(alerts)) + (": `%s`" % alerts[0].strip()[:120] if alerts else ""),
               "0", not alerts)
    errs = sum(r["errors"] for r in runs if r["target"] == "module")
    if runs and "module" in targets_present:
        tg.add("module errors (non-2xx, socket errors) in all runs", str(errs), "0", errs == 0)

    # ---------------------------------------------------------------- enqueue alternatives
    enqueue_section(L, raw, cells, conns)

    # ---------------------------------------------------------------- streams
    spath = os.path.join(raw, "streams.json")
    sdata = json.load(open(spath)) if os.path.exists(spath) else None
    if sdata and sdata.get("runs"):
        L.append("## Open streams on one nginx worker (`/job-stream`)")
        L.append("")
        L.append("`bench/streams.py`: one nginx worker; N jobs queued through `POST /chat` with no "
                 "worker running, N clients open `GET /job-stream` (one per job: N per-job "
                 "subscriptions) and wait for their first `status` event; nginx worker RSS "
                 "(VmRSS) before and after ÷ N = memory per open stream, next to N idle "
                 "keep-alive connections to `return 204` on the same nginx (the baseline). Then "
                 "one ragq-worker writes the answers (%d words, one SSE event per word %g ms "
                 "apart from the stand-in, batched every 50 ms): every stream must end with "
                 "`done`, its `token` texts equal to `result`. Valkey commands per answer "
                 "counted under MONITOR, by sender." % (sdata["words"], sdata["token_ms"]))
        L.append("")
        L.append("| open streams | opened | subscriptions | RSS per stream | RSS per idle "
                 "connection | ratio | nginx CPU µs per stream (open / answer) | ended with "
                 "`done` | text = result | subscriptions left | token events per stream | "
                 "Valkey commands per answer: nginx / worker (in its scripts) |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for x in sdata["runs"]:
            L.append("| %d | %d | %d | %s B | %s B | %s | %s / %s | %d | %d | %d | %s | %s / %s (%s) |" % (
                x["streams"], x["opened"], x["subscriptions_open"],
                f(x["rss_per_stream_b"]), f(x["rss_per_idle_conn_b"]),
                f(x["rss_per_stream_b"] / x["rss_per_idle_conn_b"]
                  if x["rss_per_idle_conn_b"] > 0 else None, "%.1f×"),
                f(x["nginx_cpu_open_us_per_stream"]), f(x["nginx_cpu_answer_us_per_stream"]),
                x["finished"], x["text_equals_result"], x["subscriptions_left"],
                f(x["tokens_per_stream"], "%.1f"), f(x["valkey_cmds_per_answer_nginx"], "%.1f"),
                f(x["valkey_cmds_per_answer_worker"], "%.1f"),
                f(x["valkey_cmds_in_scripts_per_answer"], "%.0f")))
        L.append("")
        big = max(sdata["runs"], key=lambda x: x["streams"])
        tg.add("open streams on one nginx worker that end with `done`, text = result",
               "%d of %d" % (min(big["finished"], big["text_equals_result"]), big["streams"]),
               "all, ≥ 1,000", big["streams"] >= 1000 and
               big["finished"] == big["text_equals_result"] == big["streams"])

    # ---------------------------------------------------------------- worker
    L.append("## Worker: jobs/s against the stand-ins (100 ms per call)")
    L.append("")
    wpath = os.path.join(raw, "worker.json")
    wdata = json.load(open(wpath)) if os.path.exists(wpath) else None
    if not wdata:
        L.append("Not measured in this run (no `build/ragq-worker`, or it failed: see the "
                 "log of `make bench`).")
        for name, goal, gate in (
                ("worker ÷ ideal at 256 in flight", "≥ 0.90", False),
                ("worker CPU per job", "≤ %g ms" % GOAL_WORKER_MS, False),
                ("worker CPU per job, streaming off", "≤ %g ms" % GOAL_WORKER_MS, True),
                ("worker CPU per job, streamed", "≤ %g ms" % GOAL_WORKER_STREAM_MS, True),
                ("worker peak RSS at 1024 in flight", "≤ 64 MB", False)):
            tg.add(name, "–", goal, None, done_when=gate)
    else:
        pts = wdata["points"]
        call_ms = wdata.get("call_ms", 100)
        L.append("Jobs are written straight into Valkey (`MULTI` / `HSET ragq:job:ID …` / "
                 "`XADD ragq:jobs * job ID` / `EXEC`, the module's data model) before "
                 "`build/ragq-worker` starts with `RAGQ_CONCURRENCY` = jobs in flight; "
                 "throughput = jobs ÷ (last `ended_at` − first `started_at`) from the job "
                 "hashes; job ms = `ended_at` − `started_at` per job (300 ms when nothing queues). A job is embed + retrieve + generate = 3 calls of %g ms, so "
                 "ideal = in flight ÷ %g s. CPU = the worker's CPU time (all threads, "
                 "`/proc/PID/task/*/schedstat`) from after its start-up to the end ÷ jobs; "
                 "peak RSS = its VmHWM. Stand-ins: %s Python process(es) "
                 "(`tests/standins/standin.py --latency-ms 100`), chat on the first, "
                 "embeddings + Qdrant on the last. Driver: `bench/worker_bench.py`." %
                 (call_ms, 3 * call_ms / 1000.0, env.get("standins", "?")))
        L.append("")
        L.append("![worker throughput](worker-throughput.png)")
        L.append("")
        L.append("| in flight | jobs | finished | failed | jobs/s | ideal | ratio | job ms p50 / p99 "
                 "| CPU ms/job | peak RSS MB | stand-in CPU % | Valkey CPU ms/job |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        with open(os.path.join(raw, "worker.csv"), "w") as fh:
            fh.write("inflight,jobs_per_s,ideal_per_s,ratio,cpu_ms_per_job,peak_rss_kb\n")
            for p in pts:
                fh.write("%d,%s,%s,%s,%s,%s\n" % (p["inflight"], p["jobs_per_s"],
                                                  p["ideal_per_s"], p["ratio"],
                                                  p["cpu_ms_per_job"], p["peak_rss_kb"]))
        for p in pts:
            L.append("| %d | %d | %d | %d | %s | %s | %s | %s / %s | %s | %s | %s | %s |" % (
                p["inflight"], p["jobs"], p["finished"], p["failed"], f(p["jobs_per_s"], "%.1f"),
                f(p["ideal_per_s"], "%.1f"), f(p["ratio"], "%.2f"),
                f(p.get("job_ms_p50")), f(p.get("job_ms_p99")),
                f(p["cpu_ms_per_job"], "%.3f"),
                f(p["peak_rss_kb"] / 1024.0 if p["peak_rss_kb"] else None, "%.1f"),
                " + ".join(f(x, "%.0f") for x in p["standin_cpu_pct"]),
                f(p["redis_cpu_ms_per_job"], "%.3f")))
        L.append("")
        sat = [p for p in pts if any((x or 0) >= 85 for x in p["standin_cpu_pct"])]
        if sat:
            L.append("**The stand-in saturates** at %s in flight (a stand-in process at ≥ 85 %% "
                     "of a core): there the ratio measures the Python stand-in on a shared "
                     "2-core machine as much as the worker." %
                     ", ".join(str(p["inflight"]) for p in sat))
            L.append("")
        bad = [p for p in pts if p["failed"] or p["timed_out"]]
        for p in bad:
            L.append("- %d in flight: %d failed%s; first error: `%s`" % (
                p["inflight"], p["failed"], ", timed out" if p["timed_out"] else "",
                p["first_error"]))
        if bad:
            L.append("")
        by = {p["inflight"]: p for p in pts}
        p = by.get(256)
        if p and p["ratio"] is not None:
            tg.add("worker ÷ ideal at 256 in flight", "%.2f (%.0f of %.0f jobs/s)" % (
                p["ratio"], p["jobs_per_s"], p["ideal_per_s"]), "≥ 0.90", p["ratio"] >= 0.90,
                "(stand-in saturated)" if p in sat else "")
        else:
            tg.add("worker ÷ ideal at 256 in flight", "–", "≥ 0.90", None)
        # At 1 in flight a few jobs carry the idle loop's timers for seconds;
        # the target is about the cost of a job under load.
        loaded = [p for p in pts if p["inflight"] >= 64 and p["cpu_ms_per_job"] is not None]
        if loaded:
            worst = max(p["cpu_ms_per_job"] for p in loaded)
            tg.add("worker CPU per job, %s in flight" % "/".join(
                str(p["inflight"]) for p in loaded),
                " / ".join("%.3f" % p["cpu_ms_per_job"] for p in loaded) + " ms",
                "≤ %g ms" % GOAL_WORKER_MS, worst <= GOAL_WORKER_MS)
        else:
            tg.add("worker CPU per job", "–", "≤ %g ms" % GOAL_WORKER_MS, None)
        spath = os.path.join(raw, "worker-stream.json")
        sdata = json.load(open(spath)) if os.path.exists(spath) else None
        smed = {}
        if sdata and sdata.get("reps"):
            L.append("### Streaming priced: the same answer streamed and not")
            L.append("")
            L.append("One worker, %d in flight, %d jobs per run, each answer %d words; streamed, the "
                     "stand-in sends one SSE event per word with %g ms between events (about "
                     "%.1f s of writing, as a model does), so the worker batches pieces every "
                     "50 ms into `P:out:ID`; `RAGQ_STREAM=off` asks for the same answer whole. "
                     "Medians of %d interleaved repetitions. Commands per job: a separate pass "
                     "of 32 jobs under `MONITOR` (top level = what the worker sends; in scripts "
                     "= what its scripts run). `bench/worker_bench.py --only-stream`." % (
                         sdata["inflight"], sdata["jobs"], sdata["words"], sdata["token_ms"],
                         sdata["words"] * sdata["token_ms"] / 1000.0,
                         sdata.get("reps", [{}])[-1].get("rep", 0) + 1))
            clients = sdata.get("clients", ["own"])
            if len(clients) > 1:
                L.append("")
                L.append("Each repetition runs the worker's HTTP client (`RAGQ_HTTP_CLIENT`) in "
                         "turn: `own` (worker/http1.c, the default for http:// upstreams) and "
                         "`curl` (libcurl, the client before it, as the baseline); the order "
                         "alternates by repetition. The gates below read `own`.")
            L.append("")
            L.append("| streaming | client | worker CPU ms/job | ÷ curl | Valkey CPU ms/job | "
                     "job ms p50 | Valkey commands/job (top level) | in scripts | EVALSHA/job |")
            L.append("|---|---|---|---|---|---|---|---|---|")
            for mode in ("off", "on"):
                rows = {}
                for client in clients:
                    rs = [x for x in sdata["reps"] if x["stream"] == mode and
                          x.get("client", "own") == client and x["cpu_ms_per_job"]]
                    rows[client] = {k: (statistics.median([x[k] for x in rs if x[k] is not None])
                                        if rs else None)
                                    for k in ("cpu_ms_per_job", "redis_cpu_ms_per_job",
                                              "job_ms_p50")}
                smed[mode] = rows[clients[0]]["cpu_ms_per_job"]
                base = rows.get("curl", {}).get("cpu_ms_per_job")
                for client in clients:
                    m = rows[client]
                    c = sdata["commands"].get(mode, {}) if client == clients[0] else {}
                    ev = ((c.get("top_level", {}).get("EVALSHA", 0) / c["jobs"])
                          if c.get("jobs") else None)
                    ratio = (m["cpu_ms_per_job"] / base
                             if client != "curl" and base and m["cpu_ms_per_job"] else None)
                    L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                        mode, client, f(m["cpu_ms_per_job"], "%.3f"), f(ratio, "%.2f"),
                        f(m["redis_cpu_ms_per_job"], "%.3f"), f(m["job_ms_p50"]),
                        f(c.get("top_level_per_job"), "%.1f"),
                        f(c.get("in_scripts_per_job"), "%.1f"), f(ev, "%.1f")))
            L.append("")
        if smed.get("off") is not None:
            tg.add("worker CPU per job, streaming off (%d words)" % sdata["words"],
                   "%.3f ms" % smed["off"], "≤ %g ms" % GOAL_WORKER_MS,
                   smed["off"] <= GOAL_WORKER_MS, done_when=True)
        else:
            tg.add("worker CPU per job, streaming off", "–", "≤ %g ms" % GOAL_WORKER_MS, None,
                   done_when=True)
        if smed.get("on") is not None:
            tg.add("worker CPU per job, streamed (%d words, %g ms apart)" % (
                sdata["words"], sdata["token_ms"]),
                "%.3f ms" % smed["on"], "≤ %g ms" % GOAL_WORKER_STREAM_MS,
                smed["on"] <= GOAL_WORKER_STREAM_MS, done_when=True)
        else:
            tg.add("worker CPU per job, streamed", "–", "≤ %g ms" % GOAL_WORKER_STREAM_MS,
                   None, done_when=True)
        p = by.get(1024)
        if p and p["peak_rss_kb"]:
            tg.add("worker peak RSS at 1024 in flight", "%.1f MB" % (p["peak_rss_kb"] / 1024.0),
                   "≤ 64 MB", p["peak_rss_kb"] <= 64 * 1024)
        else:
            tg.add("worker peak RSS at 1024 in flight", "–", "≤ 64 MB", None)
        plot(bench, raw, pts)

    # ---------------------------------------------------------------- RQ workers
    rpath = os.path.join(raw, "worker-rq.json")
    rdata = json.load(open(rpath)) if os.path.exists(rpath) else None
    if rdata:
        rpts = rdata["points"]
        L.append("### The seed's worker: RQ against the same stand-ins")
        L.append("")
        L.append("`bench/seed/rq_bench.py`: %s (`bench/seed/worker.py`, the job module and "
                 "its libraries imported once in the parent, as RQ advises) running "
                 "`bench/seed/jobs.py`: the LangChain worker's three calls (embeddings, "
                 "Qdrant `points/query`, chat completions) made with python3-requests, since "
                 "LangChain is not packaged in Debian (LangChain's own CPU per call would come "
                 "on top). RQ runs one job at a time per process, so jobs in flight = worker "
                 "processes; N processes are started and registered before N × 8 jobs are "
                 "enqueued with RQ's `enqueue_many`. Same redis-server and stand-ins as "
                 "ragq-worker above; throughput = jobs ÷ (last `ended_at` − first "
                 "`started_at`); CPU = the worker processes' own plus their forked work "
                 "horses' (`utime+stime+cutime+cstime`) ÷ jobs; RSS = VmRSS of one worker "
                 "process (median) and the peak sum over all processes and horses (PSS, "
                 "which counts pages shared after fork once)." % rdata.get("worker", "RQ"))
        L.append("")
        L.append("| worker | jobs in flight (processes) | jobs | failed | jobs/s | ideal | ratio "
                 "| job ms p50 / p99 | CPU ms/job (processes + horses) | RSS per process MB "
                 "| peak RSS / PSS all MB | Valkey CPU ms/job |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        wby = {p["inflight"]: p for p in (wdata["points"] if wdata else [])}
        for p in rpts:
            L.append("| RQ | %d | %d | %d | %s | %s | %s | %s / %s | %s (%s + %s) | %s | %s / %s "
                     "| %s |" % (
                         p["processes"], p["jobs"], p["failed"], f(p["jobs_per_s"], "%.1f"),
                         f(p["ideal_per_s"], "%.1f"), f(p["ratio"], "%.2f"),
                         f(p["job_ms_p50"]), f(p["job_ms_p99"]),
                         f(p["cpu_ms_per_job"], "%.1f"),
                         f(p["cpu_main_s"] * 1000.0 / p["jobs"], "%.1f"),
                         f(p["cpu_horses_s"] * 1000.0 / p["jobs"], "%.1f"),
                         f(p["rss_per_process_kb_median"] / 1024.0, "%.1f"),
                         f(p["rss_total_kb_peak"] / 1024.0, "%.0f"),
                         f(p["pss_total_kb_peak"] / 1024.0, "%.0f"),
                         f(p["redis_cpu_ms_per_job"], "%.3f")))
            w = wby.get(p["processes"])
            if w:
                L.append("| ragq-worker | %d (1 process) | %d | %d | %s | %s | %s | %s / %s | %s "
                         "| %s | %s | %s |" % (
                             w["inflight"], w["jobs"], w["failed"], f(w["jobs_per_s"], "%.1f"),
                             f(w["ideal_per_s"], "%.1f"), f(w["ratio"], "%.2f"),
                             f(w.get("job_ms_p50")), f(w.get("job_ms_p99")),
                             f(w["cpu_ms_per_job"], "%.3f"),
                             f(w["peak_rss_kb"] / 1024.0 if w["peak_rss_kb"] else None,
                               "%.1f"), "–", f(w["redis_cpu_ms_per_job"], "%.3f")))
        L.append("")
        for p in rpts:
            if p.get("timed_out"):
                L.append("- RQ, %d processes: stopped at the deadline with %d of %d jobs done; "
                         "its row is over the jobs done." % (
                             p["processes"], p["finished"] + p["failed"], p["jobs"]))
        if any(p.get("timed_out") for p in rpts):
            L.append("")
        both = [(p, wby[p["processes"]]) for p in rpts if p["processes"] in wby
                and p["processes"] > 1 and p["cpu_ms_per_job"] and
                wby[p["processes"]]["cpu_ms_per_job"]]
        for p, w in both:
            L.append("At %d jobs in flight: RQ spends **%.0f×** the CPU per job of ragq-worker "
                     "(%.1f vs %.3f ms) and reaches %.2f of the ideal throughput against "
                     "ragq-worker's %.2f, with %d processes (%.0f MB PSS) against one (%.1f MB "
                     "peak RSS)." % (
                         p["processes"], p["cpu_ms_per_job"] / w["cpu_ms_per_job"],
                         p["cpu_ms_per_job"], w["cpu_ms_per_job"], p["ratio"] or 0,
                         w["ratio"] or 0, p["processes"], p["pss_total_kb_peak"] / 1024.0,
                         (w["peak_rss_kb"] or 0) / 1024.0))
            L.append("")

    # ---------------------------------------------------------------- profile
    ppath = os.path.join(raw, "profile.json")
    L.append("## Profile: instructions per request (callgrind)")
    L.append("")
    if os.path.exists(ppath):
        prof = json.load(open(ppath))
        base = None
        bpath = os.path.join(bench, "profile-baseline.json")
        if os.path.exists(bpath):
            base = json.load(open(bpath))
        L.append("`bench/profile`: nginx (1 worker, `master_process off`) under `valgrind "
                 "--tool=callgrind --toggle-collect=ngx_process_events_and_timers`, %d requests "
                 "per endpoint over one keep-alive connection (`bench/seed.py`, Python); instructions "
                 "counted inside the event loop only (start-up excluded) ÷ requests; exact and "
                 "repeatable, unlike the wrk numbers. `perf stat -e "
                 "instructions` is %s on this VM." % (prof["n"], prof.get("perf", "?")))
        L.append("")
        L.append("| endpoint | target | instructions/request | ÷ ceiling | baseline (%s) |" %
                 (base.get("label", "before") if base else "none recorded"))
        L.append("|---|---|---|---|---|")
        for ep in ("chat", "status"):
            for t in ("module", "ceiling", "lua"):
                v = prof.get("ir_per_req", {}).get(ep, {}).get(t)
                if v is None:
                    continue
                b = base.get("ir_per_req", {}).get(ep, {}).get(t) if base else None
                c = prof["ir_per_req"][ep].get("ceiling")
                L.append("| %s | %s | %s | %s | %s |" % (ep, TARGET_NAMES[t], f(v),
                                                      f(v / c if c else None, "%.1f×"), f(b)))
        L.append("")
        sc = prof.get("syscalls_per_req")
        if sc:
            L.append("Syscalls per request of the (single) nginx worker, `strace -f -c` attached "
                     "while `wrk -t1 -c50` runs against it (the client socket costs one "
                     "`recvfrom` + one `writev`; everything above the ceiling is Valkey "
                     "traffic and event bookkeeping). Full counts in "
                     "`raw/syscalls-<target>-<endpoint>.txt`.")
            L.append("")
            L.append("| endpoint | target | syscalls/request | main calls per request |")
            L.append("|---|---|---|---|")
            for ep in ("chat", "status"):
                for t in ("module", "lua", "ceiling"):
                    x = sc.get(ep, {}).get(t)
                    if not x:
                        continue
                    calls = ", ".join("%s %.2f" % (k, v) for k, v in
                                      list(x["by_call"].items())[:6])
                    L.append("| %s | %s | %.2f | %s |" % (ep, TARGET_NAMES[t], x["total"],
                                                        calls))
            L.append("")
        for ep in ("chat", "status"):
            fn = prof.get("functions", {}).get(ep)
            if fn:
                L.append("Top functions, `%s`, module (inclusive instructions per request):" % ep)
                L.append("")
                L.append("| function | Ir/req (incl.) |")
                L.append("|---|---|")
                for name, v in fn[:15]:
                    L.append("| `%s` | %.0f |" % (name, v))
                L.append("")
            ex = prof.get("exclusive", {}).get(ep)
            if ex:
                L.append("Where the instructions are spent, `%s`, module (exclusive, whole "
                         "process, per request):" % ep)
                L.append("")
                L.append("| function | Ir/req (self) |")
                L.append("|---|---|")
                for name, v in ex[:12]:
                    L.append("| `%s` | %.0f |" % (name, v))
                L.append("")
        wk = prof.get("worker")
        if wk and wk.get("ir_per_job"):
            L.append("### Worker: instructions per job")
            L.append("")
            L.append("`build/ragq-worker` under `valgrind --tool=callgrind "
                     "--toggle-collect=ragq_loop_run`, %d jobs queued beforehand, "
                     "`RAGQ_CONCURRENCY=64`, one stand-in with no added latency: **%.0f "
                     "instructions per job** (3 HTTP calls, JSON building and parsing, Valkey "
                     "writes). Where they are spent (exclusive, per job):" %
                     (wk["jobs"], wk["ir_per_job"]))
            L.append("")
            L.append("| function | Ir/job (self) |")
            L.append("|---|---|")
            for name, v in wk["exclusive"][:15]:
                L.append("| `%s` | %.0f |" % (name, v))
            L.append("")
    else:
        L.append("Not run (BENCH_PROFILE=0, or no module).")
        L.append("")

    # ---------------------------------------------------------------- targets
    # Read first: the verdicts, right under the machine table.
    L[targets_at:targets_at] = ["## Targets", "", tg.summary(), "", tg.md(), ""]
    out = "\n".join(L)
    with open(os.path.join(bench, "RESULTS.md"), "w") as fh:
        fh.write(out)
    with open(os.path.join(raw, "summary.json"), "w") as fh:
        json.dump({"module": summary, "rss": rss_series,
                   "targets": [{"name": n, "measured": v, "goal": g, "met": ok}
                               for n, v, g, ok, _ in tg.rows]}, fh, indent=1)


ENQ_ORDER = ("a", "b", "c", "d", "g", "h3", "e", "e_xlen")
ENQ_READS = ("s_hgetall_queued", "s_miss_then_xrange")
RB_NAMES = {"hset7": "`HSET` of a new 7-field job hash (the old model's enqueue write)",
            "hset2": "`HSET` of a new 2-field job hash (fields packed)",
            "xadd_job": "`XADD P:jobs * job ID` (the old model's queue entry)",
            "xadd_entry": "`XADD` carrying the job (as built: the whole enqueue)"}


def enqueue_section(L, raw, cells, conns):
    """Valkey CPU per enqueue: the old five-command enqueue (what the Lua peer
    sends), the one XADD built in issue 13 and the alternatives weighed in
    bench/ENQUEUE.md, measured in this run (bench/enqueue.py, bench/enqueue-rb)."""
    L.append("## Enqueue: the old five commands, one XADD and the alternatives")
    L.append("")
    epath = os.path.join(raw, "enqueue-alternatives.json")
    rpath = os.path.join(raw, "enqueue-redis-benchmark.txt")
    if not os.path.exists(epath) and not os.path.exists(rpath):
        L.append("Not measured in this run (BENCH_ENQUEUE=0, or a run of `bench/run` from "
                 "before issue 13's enqueue step). Earlier figures: `bench/ENQUEUE.md`.")
        L.append("")
    else:
        enqueue_tables(L, epath, rpath)
    rows = []
    for c in conns:
        m, lu = cells.get(("chat", c, "module")), cells.get(("chat", c, "lua"))
        if m and lu and m["valkey_us"] and lu["valkey_us"]:
            n = lambda x: (" (%.2f commands)" % x["valkey_cmds"]  # noqa: E731
                           if x["valkey_cmds"] is not None else "")
            rows.append("| %d | %.1f%s | %.1f%s |" % (c, lu["valkey_us"], n(lu),
                                                     m["valkey_us"], n(m)))
    if rows:
        L.append("Through nginx, same run (`/chat` tables above): Valkey CPU µs per `/chat`.")
        L.append("")
        L.append("| conns | Lua peer (the old five commands) | ragq module (one `XADD`) |")
        L.append("|---|---|---|")
        L.extend(rows)
        L.append("")


def enqueue_tables(L, epath, rpath):
    L.append("Valkey's CPU per question for each way of queueing it, in this run, on a "
             "private redis-server (`--save ''`, no AOF, the workers' group created): "
             "`bench/enqueue.py` sends the exact bytes each alternative would send (the "
             "old model's byte for byte as the module wrote them before issue 13, which is "
             "also what the Lua peer sends), *depth* questions per write as a busy nginx "
             "worker pipelines them; CPU = `INFO cpu` (sys + user) over the run ÷ "
             "questions; *in commands* = `INFO commandstats` usec of the top-level commands "
             "÷ questions. What each keeps or breaks of DESIGN §1–2, and instruction counts: "
             "`bench/ENQUEUE.md`.")
    L.append("")
    if os.path.exists(epath):
        doc = json.load(open(epath))
        summ, desc = doc.get("summary", {}), doc.get("describe", {})
        cfgs = sorted(summ, key=lambda c: (int(c.rstrip("aof")), c))
        env = doc.get("env", {})
        L.append("%s questions a run, medians of %s interleaved repetitions (runs in "
                 "parentheses)." % (env.get("n", "?"), env.get("reps", "?")))
        L.append("")
        L.append("| | what is sent per question | commands | " +
                 " | ".join("Valkey CPU µs, depth %s" % c for c in cfgs) +
                 " | in commands µs, depth %s | memory B/job |" % cfgs[-1])
        L.append("|---|---|---|" + "---|" * len(cfgs) + "---|---|")
        for group in (ENQ_ORDER, ENQ_READS):
            for n in group:
                xs = [summ[c].get(n) for c in cfgs]
                if not any(xs):
                    continue
                last = xs[-1] or {}
                cq = next(x["commands_per_q"] for x in xs if x)
                bold = "**%s**" if n == "e" else "%s"
                L.append("| %s | %s | %s | %s | %s | %s |" % (
                    bold % n, desc.get(n, "").replace("<", "&lt;"), f(cq, "%.0f"),
                    " | ".join(bold % ("%.1f (%s)" % (x["cpu_us"], ", ".join(
                        "%.1f" % v for v in x["cpu_us_runs"]))) if x else "–" for x in xs),
                    f(last.get("cmd_us"), "%.2f"),
                    f(last.get("mem_bytes_per_q"), "%.0f") if n not in ENQ_READS else "–"))
        L.append("")
        a = summ.get(cfgs[-1], {}).get("a")
        e = summ.get(cfgs[-1], {}).get("e")
        if a and e and e["cpu_us"]:
            L.append("At depth %s the one `XADD` costs Valkey **%.1f µs** per question against "
                     "**%.1f µs** for the old five commands (%.1f× less)." % (
                         cfgs[-1], e["cpu_us"], a["cpu_us"], a["cpu_us"] / e["cpu_us"]))
            L.append("")
    if os.path.exists(rpath):
        rb = {}
        for line in open(rpath):
            m = re.match(r"^(\w+) rep (\d+): ([\d.]+) µs CPU per command, usec_per_call "
                         r"([\d.]+)", line)
            if m:
                rb.setdefault(m.group(1), []).append((float(m.group(3)), float(m.group(4))))
        head = [l.strip("# \n") for l in open(rpath) if l.startswith("# redis-benchmark")]
        L.append("Cross-check with redis-benchmark's own load generator (one command each; it "
                 "cannot send MULTI/EXEC): `bench/enqueue-rb`, `%s`. Medians." % (
                     head[0].split(";")[0] if head else "redis-benchmark"))
        L.append("")
        L.append("| command | Valkey CPU µs per command (runs) | usec_per_call |")
        L.append("|---|---|---|")
        for k in ("hset7", "hset2", "xadd_job", "xadd_entry"):
            if k in rb:
                L.append("| %s | %.1f (%s) | %.2f |" % (
                    RB_NAMES[k], med(x for x, _ in rb[k]),
                    ", ".join("%.1f" % x for x, _ in rb[k]), med(u for _, u in rb[k])))
        if "hset7" in rb and "xadd_job" in rb:
            L.append("| old model's writes together (`HSET` 7 fields + `XADD … job ID`, "
                     "without MULTI/XLEN/EXEC) | %.1f | |" % (
                         med(x for x, _ in rb["hset7"]) + med(x for x, _ in rb["xadd_job"])))
        L.append("")

def plot(bench, raw, pts):
    script = os.path.join(bench, "worker-throughput.gp")
    try:
        subprocess.run(["gnuplot", "-e", "datafile='%s'; outfile='%s'" % (
            os.path.join(raw, "worker.csv"), os.path.join(bench, "worker-throughput.png")),
            script], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.stderr.write("report: gnuplot failed: %s\n" % e)


if __name__ == "__main__":
    main()
