#!/usr/bin/env python3
"""Stand-in for the OpenAI-compatible API and Qdrant's REST API, for ragq tests and benchmarks.

Owns: one loopback HTTP/1.1 server (hand-written on asyncio protocols so that 1000+ keep-alive
connections with injected latency stay cheap) that answers /v1/* like an OpenAI-compatible server
and /collections/* like Qdrant 1.19, with deterministic embeddings and answers, an in-memory
vector store with real cosine/dot/euclid search, and /_standin/* control endpoints for latency,
fault injection and request statistics. Python 3 stdlib only (uvloop is used when importable).
See README.md next to this file for the wire-level contract.
"""

import argparse
import asyncio
import base64
import collections
import hashlib
import heapq
import itertools
import json
import math
import operator
import os
import random
import re
import struct
import sys
import time
import uuid

WORD_RE = re.compile(r"\w+")
SOURCE_LINE_RE = re.compile(r"^\[(\d+)\] \(")
SENTENCE_END_RE = re.compile(r"[.!?](?=\s|$)")
MAX_HEADER_BYTES = 65536
MAX_BODY_BYTES = 64 * 1024 * 1024
LOG_KEEP = 500
LOG_BODY_MAX = 256 * 1024  # bigger bodies (bulk upserts) are not kept in the request log
DISTANCES = ("Cosine", "Euclid", "Dot", "Manhattan")
NUMBER_TYPES = {int, float}
CACHE_ENTRIES = 1024
CACHE_HEAD = 128
QDRANT_VERSION = "1.19.0"
IDK = "I don't know based on the provided sources."

REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
    413: "Payload Too Large", 422: "Unprocessable Entity", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
    507: "Insufficient Storage",
}

JSON_CT = b"application/json"


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class HttpError(Exception):
    """Raised by handlers: becomes a response in the owning API's error shape."""

    def __init__(self, status, body, ctype=JSON_CT, headers=None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.ctype = ctype
        self.headers = headers or {}


# --------------------------------------------------------------------------- embeddings

class Embedder:
    """Feature-hashing embedder: shared words give high cosine, results are stable across runs."""

    def __init__(self):
        self.cache = {}

    def _slot(self, token, dim):
        key = (token, dim)
        hit = self.cache.get(key)
        if hit is None:
            # blake2b, not hash(): Python's str hash is salted per process.
            h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
            hit = (h % dim, 1.0 if (h >> 63) & 1 else -1.0)
            if len(self.cache) > 200000:
                self.cache.clear()
            self.cache[key] = hit
        return hit

    @staticmethod
    def tokens(text):
        return WORD_RE.findall(text.lower())

    def embed(self, text, dim):
        toks = self.tokens(text)
        if not toks:
            # Punctuation-only text still gets a unit vector so cosine stays defined.
            toks = [text.strip() or "\0"]
        vec = [0.0] * dim
        for t in toks:
            i, s = self._slot(t, dim)
            vec[i] += s
        norm = math.sqrt(sum(v * v for v in vec))
        if norm == 0.0:
            # All tokens cancelled out: fall back to the first token's slot alone.
            i, s = self._slot(toks[0], dim)
            vec[i] = s
            norm = 1.0
        return [v / norm for v in vec], len(toks)


# --------------------------------------------------------------------------- vector store

class Collection:
    def __init__(self, name, size, distance):
        self.name = name
        self.size = size
        self.distance = distance
        self.points = {}  # key (int or canonical uuid str) -> [vector, payload, version]
        self.op = 0
        self.generation = 0  # bumped on every write; keys the query cache and the columns
        self._cols = (-1, [], [])

    def columns(self):
        """(ids, per-dimension value lists), rebuilt lazily after writes."""
        if self._cols[0] != self.generation:
            pids = list(self.points)
            cols = [list(col) for col in zip(*(self.points[p][0] for p in pids))]
            if not cols:
                cols = [[] for _ in range(self.size)]
            self._cols = (self.generation, pids, cols)
        return self._cols[1], self._cols[2]


def canonical_id(raw):
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if 0 <= raw < 2**64 else None
    if isinstance(raw, str):
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            return None
    return None


def id_sort_key(pid):
    # Qdrant orders integer ids before UUIDs when scrolling.
    return (0, pid, "") if isinstance(pid, int) else (1, 0, pid)


def qerr(status, message, time_=0.0):
    return HttpError(status, dumps({"status": {"error": message}, "time": time_}))


def payload_get(payload, key):
    """Values at a dotted key; arrays are flattened as Qdrant's match does."""
    cur = [payload]
    for part in key.split("."):
        nxt = []
        arr = part.endswith("[]")
        if arr:
            part = part[:-2]
        for c in cur:
            if isinstance(c, dict) and part in c:
                v = c[part]
                if isinstance(v, list):
                    nxt.extend(v)
                else:
                    nxt.append(v)
        cur = nxt
    return cur


def match_condition(cond, pid, payload):
    if not isinstance(cond, dict):
        raise qerr(400, "Format error in JSON body: condition must be an object")
    if "must" in cond or "should" in cond or "must_not" in cond:
        return match_filter(cond, pid, payload)
    if "has_id" in cond:
        ids = {canonical_id(x) for x in cond["has_id"]}
        return pid in ids
    if "is_empty" in cond:
        vals = payload_get(payload or {}, cond["is_empty"].get("key", ""))
        return all(v is None for v in vals)
    if "is_null" in cond:
        vals = payload_get(payload or {}, cond["is_null"].get("key", ""))
        return any(v is None for v in vals)
    key = cond.get("key")
    if not isinstance(key, str):
        raise qerr(400, "Format error in JSON body: unsupported filter condition")
    vals = payload_get(payload or {}, key)
    if "match" in cond:
        m = cond["match"]
        if "value" in m:
            return any(v == m["value"] and type(v) is type(m["value"]) for v in vals)
        if "any" in m:
            return any(v in m["any"] for v in vals)
        if "except" in m:
            return bool(vals) and not any(v in m["except"] for v in vals)
        if "text" in m:
            return any(isinstance(v, str) and m["text"] in v for v in vals)
        raise qerr(400, "Format error in JSON body: unsupported match condition")
    if "range" in cond:
        r = cond["range"]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]

        def ok(v):
            return (("gt" not in r or r["gt"] is None or v > r["gt"])
                    and ("gte" not in r or r["gte"] is None or v >= r["gte"])
                    and ("lt" not in r or r["lt"] is None or v < r["lt"])
                    and ("lte" not in r or r["lte"] is None or v <= r["lte"]))
        return any(ok(v) for v in nums)
    raise qerr(400, "Format error in JSON body: unsupported filter condition")


def _clauses(x):
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def match_filter(flt, pid, payload):
    if flt is None:
        return True
    if not isinstance(flt, dict):
        raise qerr(400, "Format error in JSON body: filter must be an object")
    extra = set(flt) - {"must", "should", "must_not", "min_should"}
    if extra:
        raise qerr(400, "Format error in JSON body: unknown field `%s`, expected one of `should`, "
                   "`min_should`, `must`, `must_not`" % sorted(extra)[0])
    for c in _clauses(flt.get("must")):
        if not match_condition(c, pid, payload):
            return False
    should = _clauses(flt.get("should"))
    if should and not any(match_condition(c, pid, payload) for c in should):
        return False
    for c in _clauses(flt.get("must_not")):
        if match_condition(c, pid, payload):
            return False
    ms = flt.get("min_should")
    if isinstance(ms, dict):
        n = sum(1 for c in _clauses(ms.get("conditions")) if match_condition(c, pid, payload))
        if n < int(ms.get("min_count", 1)):
            return False
    return True


def select_payload(payload, wp):
    if wp is None or wp is False:
        return None
    if payload is None:
        payload = {}
    if wp is True:
        return payload
    if isinstance(wp, list):
        return {k: v for k, v in payload.items() if k in wp}
    if isinstance(wp, dict):
        if "include" in wp:
            inc = _clauses(wp["include"])
            return {k: v for k, v in payload.items() if k in inc}
        if "exclude" in wp:
            exc = _clauses(wp["exclude"])
            return {k: v for k, v in payload.items() if k not in exc}
    raise qerr(400, "Format error in JSON body: with_payload must be a bool, a list of keys or "
               "{include|exclude}")


# --------------------------------------------------------------------------- the application

class App:
    def __init__(self, args):
        self.args = args
        self.loop = None
        self.embedder = Embedder()
        self.collections = {}
        self.query_cache = collections.OrderedDict()
        self.reset_runtime()
        self.started = int(time.time())
        self.chat_seq = 0

    def reset_runtime(self):
        self.latency = (self.args.latency_ms or 0) / 1000.0
        # A streamed chat answer's pace and length (bench: a ~200-token answer written over time).
        self.token_delay = (self.args.token_ms or 0) / 1000.0
        self.answer_words = self.args.answer_words or 0
        self.faults = []
        self.req_counts = collections.Counter()
        self.log = collections.deque(maxlen=LOG_KEEP)
        self.rng = random.Random(self.args.seed)
        self.flood_sent = 0
        self.tally_rule = None  # (path, compiled regex) of /_standin/tally
        self.tally = collections.Counter()
        self.hooks = []  # webhook receiver: every request to /hooks/..., raw
        # requests whose client closed the connection before the answer was complete (a
        # canceled job's worker aborting its call), by path
        self.aborted = collections.Counter()
        # When each streamed event left (CLOCK_MONOTONIC ms, as Perl's and the worker's clocks
        # read it) and its bytes: how long a piece takes to reach Valkey (stream_paced.t).
        self.stream_sent = collections.deque(maxlen=LOG_KEEP)

    def count_tally(self, req, resp):
        """Counts the tag (first match of the tally pattern in the request body) of a request the
        API answered with 2xx: upstream work done, e.g. chat completions per job."""
        rule = self.tally_rule
        if rule is None or not req.path.startswith(rule[0]):
            return
        if not isinstance(resp, (Response, StreamResponse)):
            return
        if isinstance(resp, Response) and not 200 <= resp.status <= 299:
            return
        m = rule[1].search(req.body.decode("utf-8", "replace"))
        if m:
            self.tally[m.group(0)] += 1

    # ---- dispatch -------------------------------------------------------------------------

    def handle(self, req):
        """Returns (delay_seconds, action). action is a Response, or a fault tuple."""
        path = req.path
        if path.startswith("/_standin/"):
            return 0.0, self.control(req)
        self.req_counts[path] += 1
        if path.startswith("/hooks/"):
            # Kept whole and raw (base64): a signature is over the exact bytes.
            self.hooks.append({"method": req.method, "path": path, "headers": req.headers,
                               "body_b64": base64.b64encode(req.body).decode("ascii"),
                               "at": time.time()})
        if len(req.body) > LOG_BODY_MAX:
            self.log.append(Request(req.method, req.path, req.query, req.headers,
                                    b'"<%d bytes, not kept>"' % len(req.body)))
        else:
            self.log.append(req)
        delay = self.latency
        rule = self.take_fault(req)
        if rule is not None:
            mode = rule.get("mode", "status")
            if mode == "delay":
                delay += rule.get("delay_ms", 0) / 1000.0
            elif mode == "status":
                return delay, self.fault_response(req, rule)
            else:
                if mode in ("malformed", "slow_body", "stream_cut", "stream_stall",
                            "stream_hold"):
                    return delay, (mode, rule, self.api_response(req))
                return delay, (mode, rule, None)
        resp = self.api_response(req)
        self.count_tally(req, resp)
        return delay, resp

    def api_response(self, req):
        t0 = time.perf_counter()
        try:
            if req.path.startswith("/v1/") or req.path == "/v1":
                return self.openai(req)
            if req.path.startswith("/hooks/"):
                return Response(200, dumps({"ok": True}))
            return self.qdrant(req, t0)
        except HttpError as e:
            return Response(e.status, e.body, e.ctype, e.headers)
        except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as e:
            # Well-formed JSON with wrong shapes deep inside (e.g. a filter whose match is a
            # number): the real servers reject those while deserialising, with a 400.
            if req.path.startswith("/v1"):
                return Response(400, oai_error("Invalid request body: %s" % e,
                                               "invalid_request_error"))
            return Response(400, dumps({"status": {"error": "Format error in JSON body: %s" % e},
                                        "time": 0.0}))
        except Exception as e:  # a bug here must not kill the connection silently
            sys.stderr.write("standin: internal error on %s %s: %r\n" % (req.method, req.path, e))
            if req.path.startswith("/v1"):
                return Response(500, oai_error("stand-in internal error: %r" % e, "server_error"))
            return Response(500, dumps({"status": {"error": "Service internal error: %r" % e},
                                        "time": 0.0}))

    def take_fault(self, req):
        for rule in self.faults:
            if rule["times"] == 0:
                continue
            if not req.path.startswith(rule.get("path", "")):
                continue
            m = rule.get("method")
            if m and m.upper() != req.method:
                continue
            pr = rule.get("probability")
            if pr is not None and self.rng.random() >= pr:
                continue
            if rule["times"] > 0:
                rule["times"] -= 1
            return rule
        return None

    def fault_response(self, req, rule):
        status = int(rule.get("status", 500))
        headers = {str(k): str(v) for k, v in (rule.get("headers") or {}).items()}
        body = rule.get("body")
        ctype = JSON_CT
        if body is None:
            if req.path.startswith("/v1"):
                body = default_oai_error(status)
            elif status == 401:
                body, ctype = b"Invalid API key or JWT", b"text/plain"
            else:
                body = dumps({"status": {"error": default_qdrant_error(status)}, "time": 0.0})
        else:
            if not isinstance(body, str):
                body = json.dumps(body)
            body = body.encode()
            if not body.lstrip().startswith((b"{", b"[")):
                ctype = b"text/plain"
        for k in list(headers):
            if k.lower() == "content-type":
                ctype = headers.pop(k).encode()
        return Response(status, body, ctype, headers)

    # ---- control endpoints ----------------------------------------------------------------

    def control(self, req):
        try:
            body = req.json() if req.body else {}
        except (ValueError, RecursionError) as e:
            return Response(400, dumps({"error": "bad JSON: %s" % e}))
        if body is None:
            body = {}
        if not isinstance(body, (dict, list)) or (isinstance(body, list) and
                                                  req.path != "/_standin/faults"):
            return Response(400, dumps({"error": "the body must be a JSON object"}))
        p = req.path
        if p == "/_standin/latency" and req.method == "POST":
            ms = body.get("ms")
            if not isinstance(ms, (int, float)) or ms < 0:
                return Response(400, dumps({"error": "ms must be a number >= 0"}))
            self.latency = ms / 1000.0
            return Response(200, dumps({"ok": True, "latency_ms": ms}))
        if p == "/_standin/stream" and req.method == "POST":
            ms = body.get("token_ms", self.token_delay * 1000.0)
            words = body.get("answer_words", self.answer_words)
            if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms < 0:
                return Response(400, dumps({"error": "token_ms must be a number >= 0"}))
            if isinstance(words, bool) or not isinstance(words, int) or words < 0:
                return Response(400, dumps({"error": "answer_words must be an integer >= 0"}))
            self.token_delay = ms / 1000.0
            self.answer_words = words
            return Response(200, dumps({"ok": True, "token_ms": ms, "answer_words": words}))
        if p == "/_standin/faults" and req.method == "POST":
            rules = body if isinstance(body, list) else [body]
            for r in rules:
                err = check_rule(r)
                if err:
                    return Response(400, dumps({"error": err}))
            for r in rules:
                r = dict(r)
                r.setdefault("times", 1)
                r.setdefault("path", "")
                r.setdefault("mode", "status")
                self.faults.append(r)
            return Response(200, dumps({"ok": True, "faults": len(self.faults)}))
        if p == "/_standin/faults" and req.method == "GET":
            return Response(200, dumps({"faults": self.faults}))
        if p == "/_standin/reset" and req.method == "POST":
            self.reset_runtime()
            if body.get("data"):
                self.collections.clear()
                self.query_cache.clear()
            return Response(200, dumps({"ok": True}))
        if p == "/_standin/stats" and req.method == "GET":
            return Response(200, dumps({"requests": dict(self.req_counts),
                                        "aborted": dict(self.aborted),
                                        "flood_sent": self.flood_sent,
                                        "stream_sent": list(self.stream_sent),
                                        "log": [r.log_entry() for r in self.log]}))
        if p == "/_standin/tally" and req.method == "POST":
            path, pattern = body.get("path", ""), body.get("pattern")
            if not isinstance(path, str) or not isinstance(pattern, str) or not pattern:
                return Response(400, dumps({"error": "path and pattern must be strings"}))
            try:
                self.tally_rule = (path, re.compile(pattern))
            except re.error as e:
                return Response(400, dumps({"error": "bad pattern: %s" % e}))
            self.tally.clear()
            return Response(200, dumps({"ok": True}))
        if p == "/_standin/hooks" and req.method == "GET":
            return Response(200, dumps({"hooks": self.hooks}))
        if p == "/_standin/tally" and req.method == "GET":
            return Response(200, dumps({"counts": dict(self.tally)}))
        return Response(404, dumps({"error": "unknown control endpoint %s %s" % (req.method, p)}))

    # ---- OpenAI side ----------------------------------------------------------------------

    def openai(self, req):
        key = self.args.api_key
        if key is not None:
            auth = req.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or not auth[7:].strip():
                raise HttpError(401, oai_error(
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error"))
            if auth[7:].strip() != key:
                given = auth[7:].strip()
                shown = given[:3] + "*" * max(0, len(given) - 7) + given[-4:] if len(given) > 7 \
                    else "*" * len(given)
                raise HttpError(401, oai_error(
                    "Incorrect API key provided: %s. You can find your API key at "
                    "https://platform.openai.com/account/api-keys." % shown,
                    "invalid_request_error", code="invalid_api_key"))
        p, m = req.path, req.method
        if p == "/v1/embeddings":
            if m != "POST":
                raise HttpError(405, oai_error("Method %s not allowed for %s" % (m, p),
                                               "invalid_request_error"), headers={"Allow": "POST"})
            return self.embeddings(req)
        if p == "/v1/chat/completions":
            if m != "POST":
                raise HttpError(405, oai_error("Method %s not allowed for %s" % (m, p),
                                               "invalid_request_error"), headers={"Allow": "POST"})
            return self.chat(req)
        if p == "/v1/models" and m == "GET":
            return Response(200, dumps({"object": "list", "data": [
                {"id": mid, "object": "model", "created": self.started, "owned_by": "standin"}
                for mid in ("standin-embed", "standin-chat", "text-embedding-3-small",
                            "gpt-4o-mini")]}))
        if p.startswith("/v1/models/") and m == "GET":
            mid = p[len("/v1/models/"):]
            self.check_model(mid)
            return Response(200, dumps({"id": mid, "object": "model", "created": self.started,
                                        "owned_by": "standin"}))
        raise HttpError(404, oai_error("Invalid URL (%s %s)" % (m, p), "invalid_request_error"))

    @staticmethod
    def oai_body(req):
        try:
            body = req.json()
        except ValueError as e:
            raise HttpError(400, oai_error(
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                "but what was sent was not valid JSON.) (%s)" % e, "invalid_request_error"))
        if not isinstance(body, dict):
            raise HttpError(400, oai_error("The request body must be a JSON object.",
                                           "invalid_request_error"))
        return body

    @staticmethod
    def check_model(model):
        if not isinstance(model, str) or not model:
            raise HttpError(400, oai_error("you must provide a model parameter",
                                           "invalid_request_error", param="model"))
        if model.startswith("missing-"):
            raise HttpError(404, oai_error(
                "The model `%s` does not exist or you do not have access to it." % model,
                "invalid_request_error", param="model", code="model_not_found"))

    def embeddings(self, req):
        body = self.oai_body(req)
        model = body.get("model")
        self.check_model(model)
        inp = body.get("input")
        if isinstance(inp, str):
            texts = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(x, str) for x in inp):
            texts = inp
        elif isinstance(inp, list) and inp:
            raise HttpError(400, oai_error(
                "'input' as token ids (arrays of integers) is not supported by this stand-in; "
                "send strings.", "invalid_request_error", param="input"))
        else:
            raise HttpError(400, oai_error(
                "'input' is a required property and must be a non-empty string or an array of "
                "1 to 2048 strings.", "invalid_request_error", param="input"))
        if len(texts) > 2048:
            raise HttpError(400, oai_error("'input' must have at most 2048 items.",
                                           "invalid_request_error", param="input"))
        for t in texts:
            if t == "":
                raise HttpError(400, oai_error("'input' cannot contain an empty string.",
                                               "invalid_request_error", param="input"))
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise HttpError(400, oai_error(
                "'%s' is not one of ['float', 'base64'] - 'encoding_format'" % fmt,
                "invalid_request_error", param="encoding_format"))
        dim = body.get("dimensions", None)
        if dim is None:
            dim = self.args.dim
        elif isinstance(dim, bool) or not isinstance(dim, int) or dim < 1 or dim > 65536:
            raise HttpError(400, oai_error("'dimensions' must be an integer >= 1.",
                                           "invalid_request_error", param="dimensions"))
        data = []
        ntok = 0
        for i, t in enumerate(texts):
            vec, n = self.embedder.embed(t, dim)
            ntok += n
            if fmt == "base64":
                emb = base64.b64encode(struct.pack("<%df" % dim, *vec)).decode()
            else:
                emb = vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        # Reversed on purpose: clients must order by "index", as the API requires.
        data.reverse()
        return Response(200, dumps({"object": "list", "data": data, "model": model,
                                    "usage": {"prompt_tokens": ntok, "total_tokens": ntok}}))

    def chat(self, req):
        body = self.oai_body(req)
        model = body.get("model")
        self.check_model(model)
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise HttpError(400, oai_error("'messages' is a required property and must be a "
                                           "non-empty array.", "invalid_request_error",
                                           param="messages"))
        texts = []
        last_user = None
        for i, msg in enumerate(msgs):
            if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
                raise HttpError(400, oai_error("messages[%d] must be an object with a role" % i,
                                               "invalid_request_error", param="messages"))
            role = msg["role"]
            if role not in ("system", "developer", "user", "assistant", "tool"):
                raise HttpError(400, oai_error(
                    "Invalid value: '%s'. Supported values are: 'system', 'assistant', 'user', "
                    "'tool', 'developer'." % role, "invalid_request_error",
                    param="messages[%d].role" % i, code="invalid_value"))
            text = content_text(msg.get("content"))
            if text is None and role != "assistant":
                raise HttpError(400, oai_error(
                    "messages[%d].content must be a string or an array of text parts" % i,
                    "invalid_request_error", param="messages[%d].content" % i))
            texts.append(text or "")
            if role == "user":
                last_user = text or ""
        temp = body.get("temperature")
        if temp is not None and (isinstance(temp, bool) or not isinstance(temp, (int, float))
                                 or not 0 <= temp <= 2):
            raise HttpError(400, oai_error("temperature must be a number between 0 and 2",
                                           "invalid_request_error", param="temperature"))
        limit = None
        for k in ("max_completion_tokens", "max_tokens"):
            v = body.get(k)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise HttpError(400, oai_error("%s must be an integer >= 1" % k,
                                               "invalid_request_error", param=k))
            limit = v if limit is None else min(limit, v)
        stream = body.get("stream", False)
        if not isinstance(stream, bool) and stream is not None:
            raise HttpError(400, oai_error("stream must be a boolean", "invalid_request_error",
                                           param="stream"))
        content = grounded_answer(last_user or "")
        if self.answer_words:
            words = content.split(" ")
            while len(words) < self.answer_words:
                words += content.split(" ")
            content = " ".join(words[:self.answer_words])
        finish = "stop"
        if limit is not None:
            words = content.split(" ")
            if len(words) > limit:
                content = " ".join(words[:limit])
                finish = "length"
        ptok = sum(len(WORD_RE.findall(t)) for t in texts)
        ctok = len(WORD_RE.findall(content))
        usage = {"prompt_tokens": ptok, "completion_tokens": ctok, "total_tokens": ptok + ctok}
        self.chat_seq += 1
        cid = "chatcmpl-standin%08d" % self.chat_seq
        created = int(time.time())
        if stream:
            opts = body.get("stream_options") or {}
            inc = bool(opts.get("include_usage")) if isinstance(opts, dict) else False
            return StreamResponse(sse_events(cid, created, model, content, finish, usage, inc))
        return Response(200, dumps({
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0,
                         "message": {"role": "assistant", "content": content, "refusal": None,
                                     "annotations": []},
                         "logprobs": None, "finish_reason": finish}],
            "usage": usage, "service_tier": "default", "system_fingerprint": "fp_standin"}))

    # ---- Qdrant side ----------------------------------------------------------------------

    def qdrant(self, req, t0):
        p, m = req.path, req.method
        if p == "/" and m == "GET":
            return Response(200, dumps({"title": "qdrant - vector search engine",
                                        "version": QDRANT_VERSION, "commit": "standin"}))
        if p in ("/healthz", "/livez", "/readyz") and m == "GET":
            return Response(200, b"healthz check passed", b"text/plain")
        key = self.args.qdrant_api_key
        if key is not None:
            given = req.headers.get("api-key")
            if given is None:
                auth = req.headers.get("authorization", "")
                if auth.startswith("Bearer "):
                    given = auth[7:].strip()
            if not given:
                raise HttpError(401, b"Must provide an API key or an Authorization bearer token",
                                b"text/plain")
            if given != key:
                raise HttpError(401, b"Invalid API key or JWT", b"text/plain")
        parts = p.split("/")
        # parts[0] == "" because the path starts with "/"
        if len(parts) < 2 or parts[1] != "collections":
            raise HttpError(404, b"", b"text/plain")
        if len(parts) == 2:
            if m == "GET":
                return self.qok({"collections": [{"name": n} for n in self.collections]}, t0)
            raise HttpError(405, b"", b"text/plain")
        name = url_unquote(parts[2])
        rest = "/".join(parts[3:])
        if not name or any(c in name for c in '<>:"/\\|?*\0\x1f') or len(name) > 255:
            raise qerr(422, "Validation error in path parameters: [name: collection name must "
                            "be 1..255 characters without any of <>:\"/\\|?*]")
        if rest == "":
            if m == "PUT":
                return self.create_collection(req, name, t0)
            if m == "GET":
                c = self.coll(name)
                return self.qok(collection_info(c), t0)
            if m == "DELETE":
                existed = self.collections.pop(name, None) is not None
                return self.qok(existed, t0)
            if m == "PATCH":
                self.coll(name)
                return self.qok(True, t0)
        if rest == "exists" and m == "GET":
            return self.qok({"exists": name in self.collections}, t0)
        if rest == "points" and m == "PUT":
            return self.upsert(req, name, t0)
        if rest == "points" and m == "POST":
            return self.retrieve(req, name, t0)
        if rest == "points/query" and m == "POST":
            return self.query(req, name, t0, legacy=False)
        if rest == "points/search" and m == "POST":
            return self.query(req, name, t0, legacy=True)
        if rest == "points/count" and m == "POST":
            return self.count(req, name, t0)
        if rest == "points/scroll" and m == "POST":
            return self.scroll(req, name, t0)
        if rest == "points/delete" and m == "POST":
            return self.delete_points(req, name, t0)
        if rest == "index" and m == "PUT":
            c = self.coll(name)
            self.qbody(req)
            c.op += 1
            return self.qok({"operation_id": c.op, "status": "completed"}, t0)
        if rest.startswith("points/") and m == "GET" and rest.count("/") == 1:
            c = self.coll(name)
            pid = canonical_id(int(rest[7:]) if rest[7:].isdigit() else rest[7:])
            if pid is None or pid not in c.points:
                raise qerr(404, "Not found: No point with id %s found" % rest[7:])
            vec, payload, _ = c.points[pid]
            return self.qok({"id": pid, "payload": payload or {}, "vector": vec}, t0)
        raise HttpError(404, b"", b"text/plain")

    @staticmethod
    def qok(result, t0):
        return Response(200, dumps({"result": result, "status": "ok",
                                    "time": time.perf_counter() - t0}))

    @staticmethod
    def qbody(req):
        if not req.body:
            return {}
        try:
            body = req.json()
        except ValueError as e:
            raise qerr(400, "Format error in JSON body: %s" % e)
        if not isinstance(body, dict):
            raise qerr(400, "Format error in JSON body: invalid type: expected a JSON object")
        return body

    def coll(self, name):
        c = self.collections.get(name)
        if c is None:
            raise qerr(404, "Not found: Collection `%s` doesn't exist!" % name)
        return c

    def create_collection(self, req, name, t0):
        body = self.qbody(req)
        vp = body.get("vectors")
        if not isinstance(vp, dict) or "size" not in vp or "distance" not in vp:
            raise qerr(400, "Bad request: the stand-in supports one unnamed dense vector: "
                            "{\"vectors\": {\"size\": N, \"distance\": \"Cosine\"}}")
        size, dist = vp["size"], vp["distance"]
        if dist not in DISTANCES:
            raise qerr(400, "Format error in JSON body: vectors: unknown variant `%s`, expected "
                            "one of `Cosine`, `Euclid`, `Dot`, `Manhattan`" % dist)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise qerr(400, "Format error in JSON body: vectors.size: invalid value, expected "
                            "u64")
        if size < 1 or size > 65536:
            raise qerr(422, "Validation error in JSON body: [vectors.size: value %d invalid, "
                            "must be from 1 to 65536]" % size)
        if name in self.collections:
            raise qerr(409, "Wrong input: Collection `%s` already exists!" % name,
                       time.perf_counter() - t0)
        self.collections[name] = Collection(name, size, dist)
        return self.qok(True, t0)

    def prepare_vector(self, c, vec):
        if isinstance(vec, dict):
            # Named vectors: only the unnamed ("") one exists in stand-in collections.
            names = [k for k in vec if k != ""]
            if names:
                raise qerr(400, "Wrong input: Not existing vector name error: %s" % names[0])
            vec = vec.get("")
        if not isinstance(vec, list) or not set(map(type, vec)) <= NUMBER_TYPES:
            raise qerr(400, "Format error in JSON body: vector must be an array of numbers")
        if len(vec) != c.size:
            raise qerr(400, "Wrong input: Vector dimension error: expected dim: %d, got %d"
                       % (c.size, len(vec)))
        vec = list(map(float, vec))
        # One pass finds NaN/Inf too: they poison the sum. Values whose square overflows are far
        # outside f32, which Qdrant stores, so rejecting them is right as well.
        n2 = sum(map(operator.mul, vec, vec))
        if not math.isfinite(n2):
            raise qerr(400, "Format error in JSON body: vector values must be finite f32 numbers")
        if c.distance == "Cosine" and n2 > 0:
            # Qdrant stores cosine vectors normalised, and returns them that way.
            n = math.sqrt(n2)
            vec = [x / n for x in vec]
        return vec

    def upsert(self, req, name, t0):
        c = self.coll(name)
        body = self.qbody(req)
        rows = []
        if "points" in body:
            pts = body["points"]
            if not isinstance(pts, list):
                raise qerr(400, "Format error in JSON body: points: invalid type, expected a "
                                "sequence")
            for pt in pts:
                if not isinstance(pt, dict) or "id" not in pt or "vector" not in pt:
                    raise qerr(400, "Format error in JSON body: points[]: missing field `id` "
                                    "or `vector`")
                rows.append((pt["id"], pt["vector"], pt.get("payload")))
        elif "batch" in body:
            b = body["batch"]
            if not isinstance(b, dict) or not isinstance(b.get("ids"), list) or \
                    not isinstance(b.get("vectors"), list):
                raise qerr(400, "Format error in JSON body: batch: missing field `ids` or "
                                "`vectors`")
            ids, vecs = b["ids"], b["vectors"]
            pls = b.get("payloads") or [None] * len(ids)
            if len(vecs) != len(ids) or len(pls) != len(ids):
                raise qerr(400, "Wrong input: number of ids and vectors must be equal")
            rows = list(zip(ids, vecs, pls))
        else:
            raise qerr(400, "Format error in JSON body: data did not match any variant of "
                            "untagged enum PointInsertOperations")
        prepared = []
        for raw_id, vec, payload in rows:
            pid = canonical_id(raw_id)
            if pid is None:
                raise qerr(400, "Format error in JSON body: value %s is not a valid point ID, "
                                "valid values are either an unsigned integer or a UUID"
                           % json.dumps(raw_id))
            if payload is not None and not isinstance(payload, dict):
                raise qerr(400, "Format error in JSON body: payload must be an object")
            prepared.append((pid, self.prepare_vector(c, vec), payload))
        c.op += 1
        for pid, vec, payload in prepared:
            c.points[pid] = [vec, payload, c.op]
        c.generation += 1
        wait = req.query.get("wait", "false") in ("true", "1")
        return self.qok({"operation_id": c.op,
                         "status": "completed" if wait else "acknowledged"}, t0)

    def ranked(self, c, qvec, flt, need):
        """Points matching the filter, best first, as (score, pid): at least `need` of them when
        there are that many. Benchmarks repeat questions, so rankings are cached until the
        next write; only the head of each is kept, to bound memory."""
        key = (id(c), c.generation, tuple(qvec), json.dumps(flt, sort_keys=True) if flt else "")
        hit = self.query_cache.get(key)
        if hit is not None and (hit[1] or need <= len(hit[0])):
            self.query_cache.move_to_end(key)
            return hit[0]
        dist = c.distance
        keep = max(need, CACHE_HEAD)
        if dist in ("Cosine", "Dot"):
            nz = [(j, x) for j, x in enumerate(qvec) if x != 0.0]
            if len(nz) * 4 <= len(qvec):
                pids, cols = c.columns()
                # Column-wise multiply-add runs in C and only the query's non-zero slots cost
                # anything: hashed-word query vectors are mostly zeros.
                acc = None
                for j, x in nz:
                    term = map(operator.mul, itertools.repeat(x), cols[j])
                    acc = list(term) if acc is None else list(map(operator.add, acc, term))
                if acc is None:
                    acc = [0.0] * len(pids)
            else:
                pids = list(c.points)
                pts = c.points
                acc = [sum(map(operator.mul, qvec, pts[p][0])) for p in pids]
            pairs = zip(acc, pids)
            if flt is not None:
                pairs = [t for t in pairs if match_filter(flt, t[1], c.points[t[1]][1])]
            out = heapq.nlargest(keep, pairs, key=operator.itemgetter(0))
            total = len(pids) if flt is None else len(pairs)
        else:
            items = c.points.items()
            if flt is not None:
                items = [(pid, rec) for pid, rec in items if match_filter(flt, pid, rec[1])]
            if dist == "Euclid":
                out = [(math.dist(qvec, rec[0]), pid) for pid, rec in items]
            else:
                out = [(sum(abs(a - b) for a, b in zip(qvec, rec[0])), pid) for pid, rec in items]
            out.sort(key=operator.itemgetter(0))
            total = len(out)
        self.query_cache[key] = (out[:keep], total <= keep)
        if len(self.query_cache) > CACHE_ENTRIES:
            self.query_cache.popitem(last=False)
        return out

    @staticmethod
    def int_param(body, name, default, minimum, alias=None):
        v = body.get(name)
        if v is None and alias:
            v = body.get(alias)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise qerr(400, "Format error in JSON body: %s: invalid value, expected usize" % name)
        if v < minimum:
            raise qerr(422, "Validation error in JSON body: [%s: value %d invalid, must be %d or "
                            "larger]" % (name, v, minimum))
        return v

    def query(self, req, name, t0, legacy):
        c = self.coll(name)
        body = self.qbody(req)
        if legacy:
            qv = body.get("vector")
            if qv is None:
                raise qerr(400, "Format error in JSON body: missing field `vector`")
            if isinstance(qv, dict) and "vector" in qv:
                if qv.get("name") not in (None, ""):
                    raise qerr(400, "Wrong input: Not existing vector name error: %s"
                               % qv.get("name"))
                qv = qv["vector"]
            if body.get("limit") is None and body.get("top") is None:
                raise qerr(400, "Format error in JSON body: missing field `limit`")
        else:
            qv = body.get("query")
            if isinstance(qv, dict) and "nearest" in qv:
                qv = qv["nearest"]
            if body.get("using") not in (None, ""):
                raise qerr(400, "Wrong input: Not existing vector name error: %s"
                           % body.get("using"))
        limit = self.int_param(body, "limit", 10, 1, alias="top")
        offset = self.int_param(body, "offset", 0, 0)
        flt = body.get("filter")
        wp = body.get("with_payload", False)
        wv = body.get("with_vector", body.get("with_vectors", False))
        thr = body.get("score_threshold")
        if thr is not None and (isinstance(thr, bool) or not isinstance(thr, (int, float))):
            raise qerr(400, "Format error in JSON body: score_threshold: expected f32")
        if qv is None:
            # No query: Qdrant scrolls in id order, without scores.
            pids = sorted((pid for pid, (_, pl, _) in c.points.items()
                           if flt is None or match_filter(flt, pid, pl)), key=id_sort_key)
            scored = [(0.0, pid) for pid in pids]
        else:
            if not isinstance(qv, list):
                pid = canonical_id(qv)
                if pid is None or pid not in c.points:
                    raise qerr(400, "Format error in JSON body: query must be a dense vector, "
                                    "{\"nearest\": vector} or an existing point id")
                qvec = c.points[pid][0]
            else:
                qvec = self.prepare_vector(c, qv)
            scored = self.ranked(c, qvec, flt, offset + limit)
            if thr is not None:
                if c.distance in ("Cosine", "Dot"):
                    scored = [t for t in scored if t[0] >= thr]
                else:
                    scored = [t for t in scored if t[0] <= thr]
        pts = []
        for s, pid in scored[offset:offset + limit]:
            vec, payload, version = c.points[pid]
            sp = {"id": pid, "version": version, "score": s}
            pl = select_payload(payload, wp)
            if pl is not None:
                sp["payload"] = pl
            if wv:
                sp["vector"] = vec
            pts.append(sp)
        return self.qok(pts if legacy else {"points": pts}, t0)

    def count(self, req, name, t0):
        c = self.coll(name)
        body = self.qbody(req)
        flt = body.get("filter")
        n = sum(1 for pid, (_, pl, _) in c.points.items()
                if flt is None or match_filter(flt, pid, pl))
        return self.qok({"count": n}, t0)

    def scroll(self, req, name, t0):
        c = self.coll(name)
        body = self.qbody(req)
        limit = self.int_param(body, "limit", 10, 1)
        flt = body.get("filter")
        wp = body.get("with_payload", True)
        wv = body.get("with_vector", False)
        start = body.get("offset")
        pids = sorted((pid for pid, (_, pl, _) in c.points.items()
                       if flt is None or match_filter(flt, pid, pl)), key=id_sort_key)
        if start is not None:
            sid = canonical_id(start)
            if sid is None:
                raise qerr(400, "Format error in JSON body: offset is not a valid point ID")
            sk = id_sort_key(sid)
            pids = [p for p in pids if id_sort_key(p) >= sk]
        page, rest = pids[:limit], pids[limit:]
        out = []
        for pid in page:
            vec, payload, _ = c.points[pid]
            rec = {"id": pid}
            pl = select_payload(payload, wp)
            if pl is not None:
                rec["payload"] = pl
            if wv:
                rec["vector"] = vec
            out.append(rec)
        return self.qok({"points": out, "next_page_offset": rest[0] if rest else None}, t0)

    def retrieve(self, req, name, t0):
        c = self.coll(name)
        body = self.qbody(req)
        ids = body.get("ids")
        if not isinstance(ids, list):
            raise qerr(400, "Format error in JSON body: missing field `ids`")
        wp = body.get("with_payload", True)
        wv = body.get("with_vector", False)
        out = []
        for raw in ids:
            pid = canonical_id(raw)
            if pid is None:
                raise qerr(400, "Format error in JSON body: value %s is not a valid point ID, "
                                "valid values are either an unsigned integer or a UUID"
                           % json.dumps(raw))
            if pid in c.points:
                vec, payload, _ = c.points[pid]
                rec = {"id": pid}
                pl = select_payload(payload, wp)
                if pl is not None:
                    rec["payload"] = pl
                if wv:
                    rec["vector"] = vec
                out.append(rec)
        return self.qok(out, t0)

    def delete_points(self, req, name, t0):
        c = self.coll(name)
        body = self.qbody(req)
        if "points" in body:
            for raw in body["points"] or []:
                c.points.pop(canonical_id(raw), None)
        elif "filter" in body:
            for pid in [pid for pid, (_, pl, _) in c.points.items()
                        if match_filter(body["filter"], pid, pl)]:
                del c.points[pid]
        else:
            raise qerr(400, "Format error in JSON body: expected `points` or `filter`")
        c.op += 1
        c.generation += 1
        wait = req.query.get("wait", "false") in ("true", "1")
        return self.qok({"operation_id": c.op,
                         "status": "completed" if wait else "acknowledged"}, t0)

    # ---- preload --------------------------------------------------------------------------

    def load_data(self, path):
        with open(path, "rb") as f:
            doc = json.load(f)
        for entry in doc if isinstance(doc, list) else [doc]:
            name = entry["collection"]
            pts = entry.get("points", [])
            vp = entry.get("vectors") or {}
            size = vp.get("size")
            if size is None:
                with_vec = [p for p in pts if "vector" in p]
                size = len(with_vec[0]["vector"]) if with_vec else self.args.dim
            c = self.collections.get(name)
            if c is None:
                c = self.collections[name] = Collection(name, size, vp.get("distance", "Cosine"))
            c.op += 1
            for p in pts:
                pid = canonical_id(p["id"])
                if pid is None:
                    raise ValueError("%s: point id %r is not a u64 or UUID" % (path, p["id"]))
                vec = p.get("vector")
                payload = p.get("payload")
                if vec is None:
                    # Text-only points are embedded with the stand-in's own embedder, so data
                    # files need no precomputed vectors.
                    pl = payload or {}
                    text = pl.get("text") or pl.get("page_content") or ""
                    vec = self.embedder.embed(text, c.size)[0]
                try:
                    vec = self.prepare_vector(c, vec)
                except HttpError as e:
                    raise ValueError("%s: point %r: %s" % (path, p["id"], e.body.decode()))
                c.points[pid] = [vec, payload, c.op]
            c.generation += 1


def url_unquote(s):
    if "%" not in s:
        return s
    from urllib.parse import unquote
    return unquote(s)


def collection_info(c):
    n = len(c.points)
    return {
        "status": "green", "optimizer_status": "ok", "indexed_vectors_count": 0,
        "points_count": n, "segments_count": 1,
        "config": {
            "params": {"vectors": {"size": c.size, "distance": c.distance}, "shard_number": 1,
                       "replication_factor": 1, "write_consistency_factor": 1,
                       "on_disk_payload": True},
            "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000,
                            "max_indexing_threads": 0, "on_disk": False},
            "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                                 "default_segment_number": 0, "max_segment_size": None,
                                 "memmap_threshold": None, "indexing_threshold": 10000,
                                 "flush_interval_sec": 5, "max_optimization_threads": None},
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
            "quantization_config": None,
        },
        "payload_schema": {},
    }


def content_text(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and \
                    isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return None


def grounded_answer(prompt):
    """The deterministic answer: quotes the first sentence of source [1], or declines."""
    lines = prompt.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("[1] ("):
            continue
        # Balanced parentheses, so sources like "guide (v2).md" survive.
        depth, j = 0, 4
        while j < len(line):
            ch = line[j]
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        source = line[5:j]
        text = line[j + 1:].strip()
        # A chunk may have been written over several lines: take them up to the next source
        # line or the blank line that precedes the question.
        for more in lines[i + 1:]:
            if not more.strip() or SOURCE_LINE_RE.match(more):
                break
            text += " " + more.strip()
        m = SENTENCE_END_RE.search(text)
        first = text[:m.end()] if m else text
        return "According to [1] (%s): %s" % (source, first.strip())
    return IDK


def sse_events(cid, created, model, content, finish, usage, include_usage):
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_standin"}
    extra = {"usage": None} if include_usage else {}

    def ev(choices, **kw):
        d = dict(base, choices=choices, **extra)
        d.update(kw)
        return b"data: " + dumps(d) + b"\n\n"

    out = [ev([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                "finish_reason": None}])]
    for piece in re.findall(r"\S+\s*", content):
        out.append(ev([{"index": 0, "delta": {"content": piece}, "logprobs": None,
                        "finish_reason": None}]))
    out.append(ev([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]))
    if include_usage:
        out.append(ev([], usage=usage))
    out.append(b"data: [DONE]\n\n")
    return out


def oai_error(message, etype, param=None, code=None):
    return dumps({"error": {"message": message, "type": etype, "param": param, "code": code}})


def default_oai_error(status):
    table = {
        400: ("Bad request (injected by stand-in).", "invalid_request_error", None),
        401: ("Incorrect API key provided (injected by stand-in).", "invalid_request_error",
              "invalid_api_key"),
        403: ("You are not allowed to access this resource (injected).", "invalid_request_error",
              None),
        404: ("The model does not exist or you do not have access to it (injected).",
              "invalid_request_error", "model_not_found"),
        429: ("Rate limit reached for requests (injected by stand-in). Please try again later.",
              "requests", "rate_limit_exceeded"),
        500: ("The server had an error while processing your request (injected).",
              "server_error", None),
        503: ("The engine is currently overloaded, please try again later (injected).",
              "server_error", None),
    }
    msg, etype, code = table.get(status, ("Injected error with status %d." % status,
                                          "server_error" if status >= 500
                                          else "invalid_request_error", None))
    return oai_error(msg, etype, code=code)


def default_qdrant_error(status):
    return {
        400: "Bad request: injected by stand-in",
        403: "Forbidden: injected by stand-in",
        404: "Not found: injected by stand-in",
        408: "Timeout: injected by stand-in",
        429: "Rate limiting exceeded: injected by stand-in",
        503: "Shard temporarily unavailable: injected by stand-in",
    }.get(status, "Service internal error: injected by stand-in")


FAULT_MODES = ("status", "drop", "hang", "malformed", "slow_body", "delay", "reset", "flood",
               "stream_cut", "stream_stall", "stream_hold")


def check_rule(r):
    if not isinstance(r, dict):
        return "a fault rule must be a JSON object"
    if r.get("mode", "status") not in FAULT_MODES:
        return "mode must be one of %s" % ", ".join(FAULT_MODES)
    if not isinstance(r.get("path", ""), str):
        return "path must be a string"
    t = r.get("times", 1)
    if isinstance(t, bool) or not isinstance(t, int) or t < -1:
        return "times must be an integer >= -1"
    st = r.get("status", 500)
    if isinstance(st, bool) or not isinstance(st, int) or not 100 <= st <= 599:
        return "status must be an HTTP status code"
    if r.get("headers") is not None and not isinstance(r["headers"], dict):
        return "headers must be an object"
    for k in ("delay_ms", "interval_ms", "bytes", "limit_bytes", "after_events"):
        v = r.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            return "%s must be a number >= 0" % k
    pr = r.get("probability")
    if pr is not None and (isinstance(pr, bool) or not isinstance(pr, (int, float))
                           or not 0 <= pr <= 1):
        return "probability must be a number from 0 to 1"
    return None


# --------------------------------------------------------------------------- HTTP/1.1 server

class Request:
    __slots__ = ("method", "path", "query", "headers", "body")

    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def log_entry(self):
        # Decoded lazily, at /_standin/stats time, to keep the request path cheap.
        body = None
        if self.body:
            try:
                body = json.loads(self.body)
            except ValueError:
                body = self.body.decode("utf-8", "replace")
        return {"method": self.method, "path": self.path, "query": self.query,
                "headers": self.headers, "body": body}


class Response:
    __slots__ = ("status", "body", "ctype", "headers")

    def __init__(self, status, body, ctype=JSON_CT, headers=None):
        self.status = status
        self.body = body
        self.ctype = ctype
        self.headers = headers


class StreamResponse:
    """An SSE body sent as one HTTP chunk per event, as OpenAI streams them."""
    __slots__ = ("events", "status")

    def __init__(self, events):
        self.events = events
        self.status = 200


def head_bytes(status, ctype, length, headers, close):
    out = ["HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Status"))]
    out.append("Content-Type: %s\r\n" % ctype.decode())
    if length is None:
        out.append("Transfer-Encoding: chunked\r\n")
    else:
        out.append("Content-Length: %d\r\n" % length)
    if headers:
        for k, v in headers.items():
            out.append("%s: %s\r\n" % (k, v))
    if close:
        out.append("Connection: close\r\n")
    out.append("\r\n")
    return "".join(out).encode("latin-1")


class BadRequest(Exception):
    def __init__(self, status, msg):
        super().__init__(msg)
        self.status = status


class HttpProtocol(asyncio.Protocol):
    """One connection. Requests are answered strictly in order; while one is pending (latency,
    hang, slow body) later pipelined bytes wait in the buffer."""

    def __init__(self, app):
        self.app = app
        self.transport = None
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.keep_alive = True
        self.head = None  # parsed head of the request whose body we are still reading
        self.pending = None  # path of the request being answered

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                import socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc):
        if self.busy and not self.closed and self.pending is not None:
            self.app.aborted[self.pending] += 1  # the client left before our answer ended
        self.closed = True

    def data_received(self, data):
        self.buf += data
        if not self.busy:
            self.process()

    def process(self):
        while not self.busy and not self.closed:
            try:
                req = self.parse()
            except BadRequest as e:
                self.send_plain(e.status, str(e).encode(), close=True)
                return
            if req is None:
                return
            self.busy = True
            self.pending = req.path
            try:
                delay, action = self.app.handle(req)
            except Exception as e:  # last resort: answer rather than leave the client hanging
                sys.stderr.write("standin: error on %s %s: %r\n" % (req.method, req.path, e))
                delay, action = 0.0, Response(500, dumps({"error": repr(e)}))
            if delay > 0:
                self.later(delay, self.perform, action)
            else:
                self.perform(action)

    def later(self, delay, fn, *args):
        self.app.loop.call_later(delay, self._fire, fn, args)

    def _fire(self, fn, args):
        # Timers are not cancelled on close; a closed connection just ignores them.
        if not self.closed:
            fn(*args)

    def parse(self):
        """Returns a complete Request or None when more bytes are needed."""
        buf = self.buf
        if self.head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    raise BadRequest(431, "request head too large")
                return None
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[:end + 4]
            while lines and lines[0] == "":
                lines.pop(0)  # tolerate stray CRLF between keep-alive requests
            if not lines:
                return None
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                raise BadRequest(400, "bad request line")
            method, target, version = parts
            headers = {}
            for line in lines[1:]:
                k, sep, v = line.partition(":")
                if not sep:
                    raise BadRequest(400, "bad header line")
                headers[k.strip().lower()] = v.strip()
            conn = headers.get("connection", "").lower()
            if version == "HTTP/1.0":
                self.keep_alive = "keep-alive" in conn
            else:
                self.keep_alive = "close" not in conn
            path, _, qs = target.partition("?")
            query = {}
            if qs:
                for kv in qs.split("&"):
                    k, _, v = kv.partition("=")
                    query[url_unquote(k)] = url_unquote(v.replace("+", " "))
            te = headers.get("transfer-encoding", "").lower()
            if te:
                if te != "chunked":
                    raise BadRequest(501, "unsupported transfer-encoding")
                length = -1
            else:
                cl = headers.get("content-length", "0") or "0"
                if not cl.isdigit():
                    raise BadRequest(400, "bad content-length")
                length = int(cl)
                if length > MAX_BODY_BYTES:
                    raise BadRequest(413, "request body too large")
            self.head = (method, path, query, headers, length, bytearray())
            if length != 0 and headers.get("expect", "").lower() == "100-continue" and \
                    len(buf) == 0:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        method, path, query, headers, length, acc = self.head
        if length >= 0:
            if len(buf) < length:
                return None
            body = bytes(buf[:length])
            del buf[:length]
        else:
            while True:
                if length == -2:
                    # Trailers after the last chunk end at an empty line.
                    end = buf.find(b"\r\n")
                    if end < 0:
                        return None
                    line = bytes(buf[:end])
                    del buf[:end + 2]
                    if line == b"":
                        break
                    continue
                end = buf.find(b"\r\n")
                if end < 0:
                    return None
                size_s = bytes(buf[:end]).split(b";")[0].strip()
                try:
                    size = int(size_s, 16)
                except ValueError:
                    raise BadRequest(400, "bad chunk size")
                if size == 0:
                    del buf[:end + 2]
                    length = -2
                    self.head = (method, path, query, headers, length, acc)
                    continue
                if len(buf) < end + 2 + size + 2:
                    return None
                acc += buf[end + 2:end + 2 + size]
                if len(acc) > MAX_BODY_BYTES:
                    raise BadRequest(413, "request body too large")
                del buf[:end + 2 + size + 2]
            body = bytes(acc)
        self.head = None
        return Request(method, path, query, headers, body)

    # ---- responses ------------------------------------------------------------------------

    def send_plain(self, status, body, close=False):
        self.transport.write(head_bytes(status, b"text/plain", len(body), None, close) + body)
        if close:
            self.closed = True
            self.transport.close()

    def done(self):
        if not self.keep_alive:
            self.closed = True
            self.transport.close()
            return
        self.busy = False
        if self.buf:
            self.process()

    def perform(self, action):
        if self.closed:
            return
        if isinstance(action, Response):
            self.transport.write(head_bytes(action.status, action.ctype, len(action.body),
                                            action.headers, not self.keep_alive) + action.body)
            self.done()
        elif isinstance(action, StreamResponse):
            self.transport.write(head_bytes(200, b"text/event-stream", None,
                                            {"Cache-Control": "no-cache"}, not self.keep_alive))
            self.stream_next(action.events, 0)
        else:
            mode, rule, resp = action
            if mode == "drop":
                self.closed = True
                self.transport.close()
            elif mode == "reset":
                # SO_LINGER 0: the close sends RST (connection reset by peer), not FIN.
                sock = self.transport.get_extra_info("socket")
                if sock is not None:
                    import socket
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.closed = True
                self.transport.abort()
            elif mode == "flood":
                # 200, then a chunked JSON body that never ends (or ends after limit_bytes):
                # an answer far larger than any client should accept.
                self.transport.write(head_bytes(200, JSON_CT, None, None, True))
                self.flood(int(rule.get("bytes", 65536)) or 1,
                           int(rule.get("limit_bytes", 1 << 40)), 0)
            elif mode == "hang":
                pass  # busy stays set: nothing more is answered on this connection
            elif mode == "malformed":
                body = b'{"object": "list", "data": [{"index": 0, "embedding": [0.1, '
                body += b'"choices": {"status": ok'
                self.transport.write(head_bytes(200, JSON_CT, len(body), None,
                                                not self.keep_alive) + body)
                self.done()
            elif mode in ("stream_cut", "stream_stall"):
                # A streamed answer that breaks after its first after_events
                # events: the connection closed without the last chunk
                # (cut), or kept open with nothing more (stall).
                if not isinstance(resp, StreamResponse):
                    self.perform(resp)
                    return
                self.transport.write(head_bytes(200, b"text/event-stream", None,
                                                {"Cache-Control": "no-cache"}, True))
                for ev in resp.events[:int(rule.get("after_events", 2))]:
                    self.transport.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                if mode == "stream_cut":
                    self.closed = True
                    self.transport.close()
            elif mode == "stream_hold":
                # The whole streamed answer, "data: [DONE]" included, then
                # nothing: no terminal chunk, the connection held open
                # (keep-alive, as a normal answer's) until the client leaves.
                if not isinstance(resp, StreamResponse):
                    self.perform(resp)
                    return
                self.transport.write(head_bytes(200, b"text/event-stream", None,
                                                {"Cache-Control": "no-cache"},
                                                not self.keep_alive))
                for ev in resp.events:
                    self.transport.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                if "end_after_ms" in rule:
                    # the terminal chunk after all, in a write of its own
                    self.later(rule["end_after_ms"] / 1000.0, self.end_chunked)
            elif mode == "slow_body":
                if isinstance(resp, StreamResponse):
                    resp = Response(200, b"".join(resp.events), b"text/event-stream")
                self.transport.write(head_bytes(resp.status, resp.ctype, len(resp.body),
                                                resp.headers, not self.keep_alive))
                step = int(rule.get("bytes", 8)) or 1
                interval = rule.get("interval_ms", 100) / 1000.0
                self.slow_next(resp.body, 0, step, interval)

    def flood(self, step, limit, sent):
        if self.closed:
            return
        # Only as fast as the client reads: keep at most 1 MiB queued here, and give the
        # loop back after a few chunks (a write to a connection the client closed is
        # dropped without growing the buffer).
        for _ in range(16):
            if (sent >= limit or self.transport.is_closing()
                    or self.transport.get_write_buffer_size() >= (1 << 20)):
                break
            n = min(step, limit - sent)
            chunk = (b'{"data":[' if sent == 0 else b"") + b" " * n
            self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += n
            self.app.flood_sent += n
        if sent >= limit:
            self.transport.write(b"0\r\n\r\n")
            self.closed = True
            self.transport.close()
            return
        if not self.transport.is_closing():
            self.later(0.005, self.flood, step, limit, sent)

    def end_chunked(self):
        self.transport.write(b"0\r\n\r\n")
        self.done()

    def stream_next(self, events, i):
        if self.closed:
            return
        ev = events[i]
        self.transport.write(b"%x\r\n%s\r\n" % (len(ev), ev))
        self.app.stream_sent.append([time.monotonic() * 1000.0, ev.decode("utf-8", "replace")])
        if i + 1 < len(events):
            # Separate writes on separate loop turns, so clients see events split across reads.
            if self.app.token_delay:
                self.later(self.app.token_delay, self.stream_next, events, i + 1)
            else:
                self.app.loop.call_soon(self.stream_next, events, i + 1)
        else:
            self.transport.write(b"0\r\n\r\n")
            self.done()

    def slow_next(self, body, pos, step, interval):
        if self.closed:
            return
        self.transport.write(body[pos:pos + step])
        pos += step
        if pos < len(body):
            self.later(interval, self.slow_next, body, pos, step, interval)
        else:
            self.done()


# --------------------------------------------------------------------------- main

def parse_args(argv):
    ap = argparse.ArgumentParser(description="OpenAI-compatible + Qdrant REST stand-in server")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--token-ms", type=float, default=0.0,
                    help="pause between the events of a streamed chat answer")
    ap.add_argument("--answer-words", type=int, default=0,
                    help="chat answers repeated up to this many words (0: as they come)")
    ap.add_argument("--dim", type=int, default=64, help="embedding size when not requested")
    ap.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY on /v1")
    ap.add_argument("--qdrant-api-key", default=None, help="require api-key: KEY on Qdrant paths")
    ap.add_argument("--data", default=None, help='JSON {"collection": name, "points": [...]}')
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="exit when the parent process goes away (no orphans from test runs)")
    ap.add_argument("--backlog", type=int, default=4096)
    ap.add_argument("--no-uvloop", action="store_true", help="use asyncio's own loop")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of the random choices of fault rules with a probability")
    a = ap.parse_args(argv)
    if a.dim < 1 or a.dim > 65536:
        ap.error("--dim must be 1..65536")
    if a.port < 0 or a.port > 65535:
        ap.error("--port must be 0..65535")
    return a


async def serve(args):
    app = App(args)
    app.loop = asyncio.get_running_loop()
    if args.data:
        app.load_data(args.data)
    server = await app.loop.create_server(lambda: HttpProtocol(app), args.host, args.port,
                                          backlog=args.backlog, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("ready %d\n" % port)
    sys.stdout.flush()
    stop = app.loop.create_future()
    import signal
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            app.loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        except (NotImplementedError, RuntimeError):
            pass
    if args.exit_with_parent:
        ppid = os.getppid()

        def watch():
            if os.getppid() != ppid:
                if not stop.done():
                    stop.set_result(None)
            else:
                app.loop.call_later(0.5, watch)
        app.loop.call_later(0.5, watch)
    await stop
    server.close()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.no_uvloop:
        try:
            import uvloop  # optional (Debian python3-uvloop): cheaper per request
            uvloop.install()
        except ImportError:
            pass
    try:
        asyncio.run(serve(args))
    except (OSError, ValueError, KeyError) as e:
        sys.stderr.write("standin: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
