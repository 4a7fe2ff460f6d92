#!/usr/bin/env python3
"""fuzz/seeds.py: writes the seed corpora fuzz/corpus/<target>/seed-* from
the wire formats of ../shared/reference/ (OpenAI-compatible and Qdrant
answers) and DESIGN.md / DEVELOPERS.md (/chat, /job-status, job hashes).
Run it after changing an input format of a target; the files are committed.
A crash found by fuzzing is added as fuzz/corpus/<target>/crash-<what>
by hand, next to these."""

import os

ROOT = os.path.dirname(os.path.abspath(__file__))
S = b"\x1e"  # section separator of the module targets (harness.h)
U = b"\x1f"  # item separator of a reply
ID = b"0123456789abcdef0123456789abcdef"


def flags(*bits):
    return bytes(bits)


def chat(f, args=b"", idem=None, tenant=b"", ctype=None, body=None, reply=b""):
    return S.join([f, args, idem or b"", tenant, ctype or b"", body or b"", reply])


def exec_reply(hset=7, xlen=1):
    # MULTI's EXEC: [HSET count, stream id, XLEN]
    return b"A" + U.join([b"\x1di" + str(hset).encode(), b"1700000000000-0",
                          b"\x1di" + str(xlen).encode()])


def script_reply(flag, xlen=-1):
    return b"A" + U.join([b"\x1di" + str(flag).encode(), ID,
                          b"\x1di" + str(xlen).encode()])


def hash_reply(*pairs):
    items = []
    for k, v in pairs:
        items += [k, v]
    return b"A" + U.join(items)


CHAT = {
    # f0: method 0-1 POST, bit2 chunked, bit3 args, bit4 idem, bit5 tenant,
    # bit6 content type, bit7 body; f1: buffers-1, bit3 file, bit4 empty
    # buffers, bits5-6 order, bit7 collection; f2: valkey, send, max query
    # length, queue, top_k; then cuts
    "args": chat(flags(0x08, 0, 0), b"query=what+is%20ragq%3F&top_k=3",
                 reply=exec_reply()),
    "args-nul": chat(flags(0x08, 0, 0), b"query=a%00b", reply=exec_reply()),
    "args-bad-utf8": chat(flags(0x08, 0, 0), b"query=%C0%AF", reply=exec_reply()),
    "json": chat(flags(0xc0, 0, 0), body=b'{"query": "hello", "top_k": 7, '
                 b'"ignored": {"a": [1, 2.5e3, true, null]}}', reply=exec_reply()),
    "json-escapes": chat(flags(0xc0, 0, 0),
                         body=b'{"query": "caf\\u00e9 \\ud83d\\ude80 \\"q\\" \\\\ end"}',
                         reply=exec_reply()),
    "json-utf8": chat(flags(0xc0, 0, 0),
                      body='{"query": "Wie geht\'s? 日本語の質問 — ¿qué? 😀"}'.encode(),
                      reply=exec_reply()),
    "chunked": chat(flags(0xc4, 0x03, 0, 40, 90, 200), body=b'{"query":"split"}',
                    reply=exec_reply()),
    "chunked-empty": chat(flags(0xc4, 0, 0), body=b"", reply=exec_reply()),
    "file": chat(flags(0xc0, 0x08, 0), body=b'{"query":"from a temp file"}',
                 reply=exec_reply()),
    "empty-bufs": chat(flags(0xc0, 0x12, 0, 100), body=b'{"query":"q","top_k":2}',
                       reply=exec_reply()),
    "dup-keys": chat(flags(0xc0, 0, 0), body=b'{"query":"x","query":"y"}',
                     reply=exec_reply()),
    "deep": chat(flags(0xc0, 0, 0), body=b'{"x":' + b"[" * 40 + b"]" * 40 + b',"query":"q"}',
                 reply=exec_reply()),
    "idem-new": chat(flags(0x18, 0, 0), b"query=once", b"key-1", reply=script_reply(1, 1)),
    "idem-replay": chat(flags(0x18, 0, 0), b"query=once", b"key-1", reply=script_reply(0)),
    "idem-reused": chat(flags(0x18, 0, 0), b"query=twice", b"key-1", reply=script_reply(2)),
    "tenant": chat(flags(0x38, 0x80, 0), b"query=q", b"k", b"acme", reply=script_reply(1, 2)),
    "tenant-empty": chat(flags(0x28, 0, 0), b"query=q", reply=exec_reply()),
    "too-long": chat(flags(0x08, 0, 0x08), b"query=0123456789", reply=exec_reply()),
    "queue-full": chat(flags(0x08, 0, 0x20), b"query=q", reply=b"I7"),
    "valkey-down": chat(flags(0x08, 0, 0x03), b"query=q", reply=b"X"),
    "valkey-error": chat(flags(0x08, 0, 0), b"query=q", reply=b"EOOM command not allowed"),
    "late-reply": chat(flags(0x08, 0x40, 0), b"query=q", reply=exec_reply()),
    "client-gone": chat(flags(0x08, 0x20, 0), b"query=q", reply=exec_reply()),
    "form": chat(flags(0xc0, 0, 0), ctype=b"application/x-www-form-urlencoded",
                 body=b"query=q", reply=exec_reply()),
    "get": chat(flags(0x02, 0, 0), reply=exec_reply()),
}

STATUS_FIELDS = [
    (b"status", b"finished"), (b"query", b"line1\nline2 \"q\""),
    (b"result", "Answer ✓ [1]".encode()), (b"tenant", b""),
    (b"sources", b'[{"id":"c1","score":0.83,"source":"doc.md","text":"ex"}]'),
    (b"usage", b'{"prompt_tokens":3,"backends":{"embedder":"openai","store":"qdrant",'
               b'"answerer":"openai"}}'),
    (b"created_at", b"1700000000123"), (b"started_at", b"1700000000200"),
    (b"ended_at", b"1700000000900"), (b"attempts", b"1"), (b"top_k", b"5"),
    (b"collection", b""),
]


def status(f, args=b"job_id=" + ID, tenant=b"", reply=b""):
    return S.join([f, args, tenant, reply])


STATUS = {
    # f: method 0-1 GET, 2 HEAD, 3 POST; bit2 tenant; bit3 args;
    # bits4-5 order; bits6-7 valkey
    "finished": status(flags(0x08), reply=hash_reply(*STATUS_FIELDS)),
    "queued": status(flags(0x08), reply=hash_reply(
        (b"status", b"queued"), (b"query", b"q"), (b"tenant", b""),
        (b"created_at", b"1700000000123"), (b"attempts", b"0"))),
    "failed": status(flags(0x08), reply=hash_reply(
        (b"status", b"failed"), (b"query", b"q"), (b"tenant", b""),
        (b"error", b'{"code":"max_attempts","message":"gave up"}'),
        (b"attempts", b"3"))),
    "corrupt": status(flags(0x08), reply=hash_reply(
        (b"status", b"fin\xffished"), (b"query", b"q\x00\xc0\xaf"),
        (b"sources", b'[{"id":"c1","text":"\xed\xa0\x80"}]'), (b"created_at", b"007"),
        (b"attempts", b"-00"), (b"usage", b"[broken"), (b"error", b'{"a":"\\ud800"}'))),
    "tenant": status(flags(0x0c), tenant=b"acme", reply=hash_reply(
        (b"status", b"queued"), (b"query", b"q"), (b"tenant", b"acme"))),
    "tenant-other": status(flags(0x0c), tenant=b"bob", reply=hash_reply(
        (b"status", b"queued"), (b"tenant", b"acme"))),
    "missing": status(flags(0x08), reply=b"A"),
    "wrongtype": status(flags(0x08), reply=b"EWRONGTYPE Operation against a key "
                        b"holding the wrong kind of value"),
    "nil": status(flags(0x08), reply=b"N"),
    "odd": status(flags(0x08), reply=b"A" + U.join([b"status", b"\x1di5", b"query"])),
    "head": status(flags(0x0a), reply=hash_reply((b"status", b"queued"))),
    "wait": status(flags(0x08), args=b"job_id=" + ID + b"&wait=2.5",
                   reply=hash_reply((b"status", b"started"))),
    "bad-id": status(flags(0x08), args=b"job_id=0123456789ABCDEF0123456789abcdef"),
    "no-args": status(flags(0x00)),
    "timeout": status(flags(0x28), reply=hash_reply((b"status", b"queued"))),
}

R = b"89abcdef01234567"  # the random half of an entry's job id
ENTRY_FIELDS = [(b"r", R), (b"query", b"what is the refund policy?"), (b"top_k", b"5"),
                (b"collection", b""), (b"tenant", b""), (b"created_at", b"1700000000123")]


def entry(f0, fields=ENTRY_FIELDS, f1=0, tenant=b"", jid=b"", eid=b"1700000000123-0",
          again=b"A", entry_id=b"1700000000123-0", raw=None):
    # flags (f0: bits 0-2 shape of the XRANGE reply, bit3 id's random half
    # from the entry's r, bit4 tenant; f1: bits 0-1 client gone / deadline),
    # tenant, job id, entry id item, 2nd HGETALL reply, entry id string,
    # the entry's fields (the rest)
    return S.join([bytes([f0, f1]), tenant, jid, eid, again, entry_id,
                   raw if raw is not None else hash_reply(*fields)])


ENTRY = {
    "queued": entry(0x08),
    "queued-callback": entry(0x08, ENTRY_FIELDS + [(b"callback_url",
                                                    b"https://hooks.example.com/ragq")]),
    "legacy-form": entry(0x08, [(b"job", ID)]),
    "wrong-r": entry(0x00),
    "wrong-r-race": entry(0x00, again=hash_reply(*STATUS_FIELDS)),
    "wrong-r-error": entry(0x00, again=b"ELOADING"),
    "no-r": entry(0x08, ENTRY_FIELDS[1:]),
    "r-integer": entry(0x08, raw=b"A" + U.join([b"r", b"\x1di7", b"query", b"q"])),
    "r-twice": entry(0x08, [(b"r", R), (b"r", b"0000000000000000")] + ENTRY_FIELDS[1:]),
    "contradicting": entry(0x08, ENTRY_FIELDS + [(b"status", b"finished"),
                                                 (b"attempts", b"3"),
                                                 (b"result", b"forged"),
                                                 (b"tenant", b"other")]),
    "many-fields": entry(0x08, ENTRY_FIELDS + [(b"f%d" % i, b"v%d" % i) for i in range(24)]),
    "odd": entry(0x08, raw=b"A" + U.join([b"r", R, b"query", b"q", b"top_k"])),
    "typed-values": entry(0x08, raw=b"A" + U.join([
        b"r", R, b"query", b"\x1dn", b"created_at", b"\x1di-5", b"tenant", b"\x1dabc",
        b"\x1dsstatus", b"x", b"sources", b"\x1deERR"])),
    "huge": entry(0x08, [(b"r", R), (b"query", b"q" * 12000 + "é".encode()),
                         (b"created_at", b"9" * 40)]),
    "bad-utf8": entry(0x08, [(b"r", R), (b"query", b"\xff\xc0\xaf\xed\xa0\x80\x00\x7f"),
                             (b"sources", b"[\xff"), (b"usage", b"{\"a\":\"\\ud800\"}"),
                             (b"callback", b"[1,")]),
    "tenant": entry(0x18, ENTRY_FIELDS[:4] + [(b"tenant", b"acme")], tenant=b"acme"),
    "tenant-other": entry(0x18, ENTRY_FIELDS[:4] + [(b"tenant", b"acme")], tenant=b"bob"),
    "tenant-none": entry(0x18, ENTRY_FIELDS[:4], tenant=b"acme"),
    "no-entry": entry(0x0c),
    "two-entries": entry(0x0d),
    "three-items": entry(0x0e),
    "flat": entry(0x0f),
    "eid-nil": entry(0x08, eid=b"\x1dn"),
    "bad-id": entry(0x08, jid=b"0123456789ABCDEF0123456789abcdef"),
    "id-max": entry(0x08, jid=b"ffffffffffffffff" + R, entry_id=b"281474976710655-65535"),
    "client-gone": entry(0x08, f1=1),
    "deadline": entry(0x08, f1=2),
    "gone-before-again": entry(0x00, f1=3),
    "entry-id-big": entry(0x08, entry_id=b"281474976710656-0"),
    "entry-id-seq": entry(0x08, entry_id=b"1-65536"),
    "entry-id-zeros": entry(0x08, entry_id=b"007-01"),
    "entry-id-bad": entry(0x08, entry_id=b"-1-"),
}

JSON = {
    "object": b'{"query": "hello", "top_k": 7, "a": [1, -2.5e-3, true, false, null]}',
    "string": b'"caf\\u00e9 \\ud83d\\ude80 \\" \\\\ \\/ \\b\\f\\n\\r\\t"',
    "utf8": '"日本語 — ¿qué? 😀"'.encode(),
    "bad-utf8": b'["\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"]',
    "sources": STATUS_FIELDS[4][1],
    "usage": STATUS_FIELDS[5][1],
    "deep": b"[" * 33 + b"]" * 33,
    "integer": b"-0012",
    "numbers": b"[0, -0, 1e999, 0.5E+3, 12345678901234567890]",
}

OPENAI = {
    "embeddings": b'{"object": "list", "data": [{"object": "embedding", "index": 0, '
                  b'"embedding": [0.0023, -0.0093, 0.0151]}], "model": '
                  b'"text-embedding-3-small", "usage": {"prompt_tokens": 8, '
                  b'"total_tokens": 8}}',
    "embeddings-2": b'{"data": [{"index": 1, "embedding": [1, 2]}, {"index": 0, '
                    b'"embedding": [3, 4]}]}',
    "chat": b'{"id": "chatcmpl-abc", "object": "chat.completion", "created": 1741569952, '
            b'"model": "gpt-4o-mini", "choices": [{"index": 0, "message": {"role": '
            b'"assistant", "content": "Refunds are issued within 30 days [1].", '
            b'"refusal": null, "annotations": []}, "logprobs": null, "finish_reason": '
            b'"stop"}], "usage": {"prompt_tokens": 412, "completion_tokens": 19, '
            b'"total_tokens": 431, "prompt_tokens_details": {"cached_tokens": 0}}}',
    "chat-refusal": b'{"choices": [{"message": {"content": null, "refusal": "no"}, '
                    b'"finish_reason": "stop"}]}',
    "error-openai": b'{"error": {"message": "Incorrect API key provided: sk-...", '
                    b'"type": "invalid_request_error", "param": null, "code": '
                    b'"invalid_api_key"}}',
    "error-llamacpp": b'{"error": {"code": 400, "message": "bad", "type": '
                      b'"invalid_request_error"}}',
    "error-vllm-flat": b'{"object":"error","message":"m","type":"t","param":null,"code":404}',
    # streamed (worker/openai_stream.c): CRLF and LF, a comment, a character
    # cut between two deltas, the usage chunk, [DONE]
    "chat-stream": b': keep-alive\r\n\r\ndata: {"choices":[{"index":0,"delta":{"role":'
                   b'"assistant","content":"h\xc3"},"finish_reason":null}]}\r\n\r\n'
                   b'data: {"choices":[{"index":0,"delta":{"content":"\xa9llo \\ud83d'
                   b'\\ude00"},"finish_reason":"stop"}]}\n\n'
                   b'data: {"choices":[],"usage":{"prompt_tokens":3,"total_tokens":5}}\n\n'
                   b'data: [DONE]\n\n',
    "chat-stream-error": b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
                         b'event: error\ndata: {"error":{"message":"overloaded"}}\n\n',
    # OpenAI's events as sent (worker/openai_chunk.c reads these): every
    # field, logprobs nested, escapes in the text, a repeated member
    "chat-stream-openai": b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk",'
                          b'"created":1,"model":"m","system_fingerprint":"fp","choices":'
                          b'[{"index":0,"delta":{"role":"assistant","content":"",'
                          b'"refusal":null},"logprobs":{"content":[{"token":"\\u0041",'
                          b'"logprob":-0.25e-3,"bytes":[65],"top_logprobs":[]}]},'
                          b'"finish_reason":null}],"usage":null}\n\n'
                          b'data: {"choices":[{"index":0,"delta":{"content":"a\\n\\"b\\"",'
                          b'"content":"c\\/"},"finish_reason":null}]}\n\n'
                          b'data: {"choices":[{"index":0,"delta":{},"finish_reason":'
                          b'"stop"}],"usage":null}\n\ndata: [DONE]\n\n',
}

QDRANT = {
    "query": b'{"result": {"points": [{"id": 42, "version": 3, "score": 0.8731, '
             b'"payload": {"text": "...", "source": "doc-7", "tenant": "acme"}}, '
             b'{"id": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "version": 5, '
             b'"score": 0.71}]}, "status": "ok", "time": 0.0021}',
    "query-langchain": b'{"result": {"points": [{"id": 1, "score": 0.5, "payload": '
                       b'{"page_content": "Moby-Dick was written by Herman Melville.", '
                       b'"metadata": {"source": "moby.md", "chunk": 0}}}]}, '
                       b'"status": "ok"}',
    "query-null-payload": b'{"result": {"points": [{"id": 7, "score": 1, "payload": null}]}}',
    "collection": b'{"result": {"status": "green", "optimizer_status": "ok", '
                  b'"segments_count": 2, "points_count": 1234, "config": {"params": '
                  b'{"vectors": {"size": 1536, "distance": "Cosine"}}}, '
                  b'"payload_schema": {}}, "status": "ok", "time": 0.001}',
    "error": b'{"status": {"error": "Not found: Collection `books` doesn\'t exist!"}, '
             b'"time": 0.0001}',
}

JSONR = {
    "chat": OPENAI["chat"],
    "query": QDRANT["query"],
    "escapes": JSON["string"],
    "numbers": JSON["numbers"],
    "dup-keys": b'{"a": 1, "a": [2, {"b": "\\u0000"}]}',
}

# Valkey's replies to the module, byte 0 = the pieces (0x00: 1-64 bytes
# seeded, 0x02: all at once; bit 0: the arena)
REPLY = {
    "job-hash": b"\x01*6\r\n$6\r\nstatus\r\n$8\r\nfinished\r\n$5\r\nquery\r\n"
                b"$2\r\nq?\r\n$7\r\nsources\r\n$2\r\n[]\r\n",
    "entry": b"\x00*1\r\n*2\r\n$15\r\n1700000000123-0\r\n*2\r\n$1\r\nq\r\n$0\r\n\r\n",
    "scalars": b"\x02+OK\r\n-ERR wrong\r\n:42\r\n:-9223372036854775808\r\n"
               b":9223372036854775807\r\n$-1\r\n*-1\r\n*0\r\n+a\rb\r\n",
    "pubsub": b"\x03*3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$5\r\nhello\r\n",
    "deep": b"\x00" + b"*1\r\n" * 8 + b":1\r\n" + b"*1\r\n" * 9 + b":1\r\n",
    "bad-integers": b"\x00:01\r\n:+1\r\n:-0\r\n:\r\n",
    "bad-type": b"\x02+OK\r\n?\r\n",
    "bulk-trailer": b"\x02$1\r\naXY+OK\r\n",
}

# HTTP/1.x answers to the worker, byte 0 = how they are cut (fuzz_http1.c)
HTTP1 = {
    "length": b"\x00HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
              b"Content-Length: 13\r\n\r\n{\"data\": [1]}",
    "chunked": b"\x07HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;x=y\r\nhello\r\n1\r\n \r\n0\r\nT: t\r\n\r\n",
    "sse": b"\x03HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n"
           b"1e\r\ndata: {\"choices\":[{\"a\":1}]}\n\n\r\n"
           b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n",
    "interim": b"\x01HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\n"
               b"Retry-After: 2\r\nRetry-After-Ms: 1500\r\nContent-Length: 0\r\n\r\n",
    "close": b"\x02HTTP/1.0 200 OK\nConnection: keep-alive, x\n\nuntil the end",
    "both": b"\x05HTTP/1.1 200 OK\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "no-content": b"\x09HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
}


def write(target, seeds):
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        if name.startswith("seed-"):
            os.unlink(os.path.join(d, name))
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("chat", CHAT)
    write("status", STATUS)
    write("entry", ENTRY)
    write("json", JSON)
    write("openai", OPENAI)
    write("qdrant", QDRANT)
    write("jsonr", JSONR)
    write("reply", REPLY)
    write("http1", HTTP1)
