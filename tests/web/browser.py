#!/usr/bin/python3
"""The chat page (web/) in a real browser, as TAP (run by tests/web/browser.t).

Starts `scripts/demo --serve` (redis-server, nginx with the module serving
web/, /chat, /job-stream, /job-cancel and /job-status, one ragq-worker, the
sample documents) on private loopback ports, with the worker's chat model
being the stand-in (tests/standins/standin.py) made slow by its `slow_body`
fault, so that the streamed answer arrives in pieces over seconds.  Headless
Debian chromium + chromedriver, driven by python3-selenium:

1. type a question, press Ask: partial answer text is visible while the job
   streams, before `done`; then the answer shown is the job's `result` (as
   /job-status reads it) and its sources are listed, citations linked;
2. ask again, on the page served under the /ask/ prefix (its API there
   too), press Stop while the answer is streaming: the page says
   canceled, and so does /job-status, and the worker closed its chat call
   (the stand-in counts the answer aborted);
3. a query the server refuses (too long): its JSON error is shown readably.

Screenshots go to tests/web/out/ (gitignored); their paths are printed.
Every process started here is stopped by its pid (and the demo's process
group) on the way out.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = os.path.abspath(os.environ.get("RAGQ_ROOT") or
                       os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "web", "out")
PYTHON = "/usr/bin/python3"
CHROMIUM = os.environ.get("RAGQ_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("RAGQ_CHROMEDRIVER", "/usr/bin/chromedriver")

QUESTION = "What happens to a job when the worker that runs it is killed?"

# ---- TAP ------------------------------------------------------------------------------

_count = 0
_failed = 0


def ok(cond, name, diag=None):
    global _count, _failed
    _count += 1
    if not cond:
        _failed += 1
    print("%sok %d - %s" % ("" if cond else "not ", _count, name), flush=True)
    if not cond and diag is not None:
        note(diag)
    return cond


def note(text):
    for line in str(text).splitlines() or [""]:
        print("# " + line, flush=True)


def bail(text):
    print("Bail out! " + text, flush=True)


# ---- the stack ------------------------------------------------------------------------

class Stack:
    """The stand-in and scripts/demo --serve, stopped by stop()."""

    def __init__(self):
        self.standin = None
        self.standin_port = None
        self.demo = None
        self.url = None
        self.work = None
        self.demo_out = []

    def start(self):
        self.standin = subprocess.Popen(
            [PYTHON, os.path.join(ROOT, "tests", "standins", "standin.py"), "--port", "0",
             "--host", "127.0.0.1", "--exit-with-parent"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            text=True)
        line = self.standin.stdout.readline()
        m = re.match(r"ready (\d+)", line)
        if not m:
            raise RuntimeError("the stand-in did not start: %r" % line)
        self.standin_port = int(m.group(1))

        env = dict(os.environ)
        for k in ("QDRANT_URL", "QDRANT_API_KEY", "RAGQ_DEMO_PORT"):
            env.pop(k, None)
        env.update({
            # local retrieval over the sample documents, the stand-in as the
            # chat model: it streams one word per SSE event
            "RAGQ_EMBEDDER": "hash", "RAGQ_STORE": "local", "RAGQ_ANSWERER": "openai",
            "OPENAI_BASE_URL": "http://127.0.0.1:%d/v1" % self.standin_port,
            "OPENAI_API_KEY": "sk-standin",
            "RAGQ_SHUTDOWN_GRACE": "2s",  # the demo's Ctrl-C does not wait for slow answers
            "RAGQ_DEMO_KEEP": "1",  # the logs survive a failure; removed below on success
        })
        if os.environ.get("TEST_NGINX_BINARY"):  # tests/run's (the ASan wrapper under ASan)
            env["RAGQ_NGINX"] = os.environ["TEST_NGINX_BINARY"]
        self.demo = subprocess.Popen(
            [os.path.join(ROOT, "scripts", "demo"), "--serve"], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            line = self.demo.stdout.readline()
            if not line:
                break
            self.demo_out.append(line.rstrip("\n"))
            if line.startswith("logs: "):
                self.work = line[6:].strip()
            if line.startswith("open: "):
                self.url = line[6:].strip()
                break
        if not self.url:
            raise RuntimeError("scripts/demo --serve printed no URL:\n" +
                               "\n".join(self.demo_out))

    def fault(self, rule):
        """Replaces the stand-in's fault rules with this one."""
        self.control("/_standin/reset", {"data": False})
        self.control("/_standin/faults", rule)

    def control(self, path, body):
        req = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.standin_port, path),
            data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stats(self):
        url = "http://127.0.0.1:%d/_standin/stats" % self.standin_port
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())

    def api(self, path, body=None):
        """(status, JSON) of a request to the demo's nginx."""
        req = urllib.request.Request(
            urllib.parse.urljoin(self.url, path),
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    @staticmethod
    def kill_leftover(pidfile, name):
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if name.encode() not in f.read():
                    return
            os.kill(pid, signal.SIGKILL)
            note("killed a leftover %s (%s)" % (name, pidfile))
        except (OSError, ValueError):
            pass

    def stop(self, passed):
        if self.demo is not None:
            if self.demo.poll() is None:
                self.demo.send_signal(signal.SIGTERM)  # its trap stops what it started
                try:
                    self.demo.wait(30)
                except subprocess.TimeoutExpired:
                    # stuck: its group (the demo, its worker) goes at once
                    os.killpg(self.demo.pid, signal.SIGKILL)
                    self.demo.wait(10)
            # the daemons of a demo that could not clean up (their pid files)
            time.sleep(0.5)
            for pidfile, name in (("logs/nginx.pid", "nginx"), ("redis.pid", "redis")):
                self.kill_leftover(os.path.join(self.work or "/nonexistent", pidfile), name)
            if self.work and os.path.isdir(self.work):
                if passed:
                    shutil.rmtree(self.work, ignore_errors=True)
                else:
                    note("demo logs kept in " + self.work)
        if self.standin is not None and self.standin.poll() is None:
            self.standin.terminate()
            try:
                self.standin.wait(10)
            except subprocess.TimeoutExpired:
                self.standin.kill()
                self.standin.wait()


# ---- the browser ----------------------------------------------------------------------

def browser(profile):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--user-data-dir=" + profile, "--window-size=1100,1000", "--no-first-run",
                "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--disable-default-apps", "--proxy-server=direct://",
                "--proxy-bypass-list=*"):
        opts.add_argument(arg)
    service = Service(executable_path=CHROMEDRIVER, log_path=os.path.join(profile, "driver.log"))
    return webdriver.Chrome(service=service, options=opts)


STATE_JS = """
var b = document.body;
return {phase: b.dataset.phase, status: b.dataset.status || '', job: b.dataset.job || '',
        tokens: Number(b.dataset.tokens || 0),
        answer: document.getElementById('answer').textContent,
        statusText: document.getElementById('status').textContent,
        error: document.getElementById('error').hidden ? ''
             : document.getElementById('error').textContent};
"""


def watch(driver, until, timeout=90):
    """Polls the page's state every 20 ms until until(state); returns (states, last)."""
    seen = []
    deadline = time.time() + timeout
    while True:
        st = driver.execute_script(STATE_JS)
        seen.append(st)
        if until(st) or time.time() > deadline:
            return seen, st
        time.sleep(0.02)


def ask(driver, question):
    box = driver.find_element(By.ID, "question")
    box.clear()
    box.send_keys(question)
    driver.find_element(By.ID, "ask").click()


def shot(driver, name):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    driver.save_screenshot(path)
    note("screenshot: " + path)
    print("# screenshot: " + path, file=sys.stderr, flush=True)  # shown by prove without -v
    return path


# ---- the cases ------------------------------------------------------------------------

def case_stream(stack, driver):
    # each word event of the streamed answer takes ~0.2 s to arrive
    stack.fault({"path": "/v1/chat/completions", "mode": "slow_body", "bytes": 48,
                 "interval_ms": 50, "times": -1})
    driver.get(stack.url)
    ok(driver.title == "ragq chat", "the page loads from nginx", driver.title)
    watch(driver, lambda s: s["phase"] == "idle", 30)
    ask(driver, QUESTION)
    seen, last = watch(driver, lambda s: s["phase"] == "done")
    ok(last["phase"] == "done", "the job ends on the page", last)
    job_id = last["job"]
    ok(re.fullmatch(r"[0-9a-f]{32}", job_id), "the page shows the job's id", last)

    status, job = stack.api("job-status?job_id=" + job_id)
    ok(status == 200 and job.get("status") == "finished", "/job-status: finished",
       (status, job))
    result = job.get("result") or ""
    partial = [s for s in seen if s["phase"] == "streaming" and s["answer"]
               and len(s["answer"]) < len(result)]
    ok(partial, "partial answer text was visible before done",
       "states seen: %d, last: %r" % (len(seen), last))
    ok(all(result.startswith(s["answer"]) for s in partial),
       "every partial text shown is a beginning of the result",
       [s["answer"] for s in partial if not result.startswith(s["answer"])][:3])
    ok(len({s["answer"] for s in partial}) >= 2, "the text grew while streaming",
       [s["answer"] for s in partial][:5])
    ok(last["tokens"] >= 2, "several token events arrived", last["tokens"])

    ok(result and last["answer"] == result, "the final answer is the job's result",
       "shown: %r\nresult: %r" % (last["answer"], result))
    ok(last["status"] == "finished" and last["statusText"] == "finished",
       "the status says finished", last)
    ok(last["error"] == "", "no error is shown", last["error"])

    sources = job.get("sources") or []
    items = driver.find_elements(By.CSS_SELECTOR, "#sources li")
    ok(sources and len(items) == len(sources), "every source is listed",
       "%d listed, %d in the job" % (len(items), len(sources)))
    names = [li.find_element(By.CLASS_NAME, "source-name").text for li in items]
    ok(names == [s.get("source") for s in sources], "sources in the job's order, by name",
       names)
    cites = driver.find_elements(By.CSS_SELECTOR, "#answer a.cite")
    ok(cites and all(re.fullmatch(r"\[\d+\]", a.text) for a in cites),
       "the answer's citations are links", [a.text for a in cites])
    target = cites[0].get_attribute("href").split("#")[-1] if cites else ""
    ok(target and driver.find_elements(By.ID, target),
       "a citation points at its source in the list", target)
    shot(driver, "answer.png")


def case_stop(stack, driver):
    # now ~2 s per word: the answer is far from done when Stop is pressed
    stack.fault({"path": "/v1/chat/completions", "mode": "slow_body", "bytes": 8,
                 "interval_ms": 100, "times": -1})
    # under the demo's /ask/ prefix: the page's chat, job-stream, job-cancel
    # and job-status are /ask/chat, ...
    driver.get(urllib.parse.urljoin(stack.url, "ask/"))
    watch(driver, lambda s: s["phase"] == "idle", 30)
    ask(driver, QUESTION)
    _, st = watch(driver, lambda s: s["phase"] == "done"
                  or (s["phase"] == "streaming" and s["answer"] != ""))
    ok(st["phase"] == "streaming" and st["answer"],
       "the answer is streaming when Stop is pressed", st)
    driver.find_element(By.ID, "stop").click()
    _, last = watch(driver, lambda s: s["phase"] == "done", 30)
    ok(last["status"] == "canceled" and "canceled" in last["statusText"],
       "the page says canceled", last)
    status, job = stack.api("job-status?job_id=" + (last["job"] or "0"))
    ok(status == 200 and job.get("status") == "canceled", "/job-status: canceled",
       (status, job))
    ok(job.get("result") in (None, ""), "no result was written", job.get("result"))
    aborted = 0
    deadline = time.time() + 15
    while time.time() < deadline:
        aborted = stack.stats().get("aborted", {}).get("/v1/chat/completions", 0)
        if aborted:
            break
        time.sleep(0.05)
    ok(aborted == 1, "the worker closed the chat model's answer it was reading", aborted)
    used = driver.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; })")
    paths = sorted({urllib.parse.urlparse(u).path for u in used})
    ok({"/ask/chat", "/ask/job-stream", "/ask/job-cancel"} <= set(paths)
       and not {"/chat", "/job-stream", "/job-cancel"} & set(paths),
       "under a path prefix the page uses the API under the same prefix", paths)
    ok(driver.find_element(By.ID, "stop").get_attribute("disabled") is not None,
       "Stop is disabled once the job ended")
    shot(driver, "canceled.png")


def case_error(stack, driver):
    query = "x" * 20000
    status, body = stack.api("chat", {"query": query})
    err = body.get("error", {}) if isinstance(body, dict) else {}
    ok(status >= 400 and err.get("code"), "the server refuses a 20000-byte query",
       (status, body))
    driver.get(stack.url)
    watch(driver, lambda s: s["phase"] == "idle", 30)
    # typing 20000 keys is slow: set the text, then press Ask
    driver.execute_script("document.getElementById('question').value = arguments[0]", query)
    driver.find_element(By.ID, "ask").click()
    _, last = watch(driver, lambda s: s["phase"] == "done", 30)
    ok(last["error"] == "%s: %s" % (err.get("code"), err.get("message")),
       "the error is shown as code: message", last)
    ok(last["status"] == "error", "the status says error", last)


def main():
    stack = Stack()
    driver = None
    profile = tempfile.mkdtemp(prefix="ragq-chromium-")
    try:
        stack.start()
        note("demo serving " + stack.url)
        driver = browser(profile)
        for case in (case_stream, case_stop, case_error):
            try:
                case(stack, driver)
            except Exception as e:  # a case that breaks fails, the others still run
                ok(False, case.__name__ + " ran to the end", repr(e))
    except Exception as e:
        ok(False, "the stack and the browser start", repr(e))
        note("\n".join(stack.demo_out[-30:]))
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:
                pass
        stack.stop(_failed == 0)
        shutil.rmtree(profile, ignore_errors=True)
    print("1..%d" % _count, flush=True)
    return 1 if _failed else 0


if __name__ == "__main__":
    sys.exit(main())
