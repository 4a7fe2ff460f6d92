"""The seed stack's RQ job: what its LangChain worker did per question, in the same shape and
against the same servers -- embed the question (OpenAI-compatible POST /embeddings), retrieve
the nearest chunks from Qdrant (POST /collections/C/points/query), ask the chat model (POST
/chat/completions) with the chunks as numbered sources -- written with python3-requests because
LangChain is not packaged in Debian.  LangChain adds its own CPU per call on top of this, so
these figures are a lower bound for the seed's worker.

Environment (as ragq-worker's): OPENAI_BASE_URL, OPENAI_API_KEY, RAGQ_EMBED_BASE_URL,
RAGQ_EMBED_API_KEY, QDRANT_URL, RAGQ_COLLECTION (documents), RAGQ_TOP_K (5),
RAGQ_CHAT_MODEL (gpt-4o-mini), RAGQ_EMBED_MODEL (text-embedding-3-small).
"""

import os

import requests

SYSTEM = ("You answer questions using only the numbered sources in the user's message. Cite "
          "every statement with the number of its source in square brackets, for example [1] "
          "or [2][3]. If the sources do not contain the answer, say that you don't know; do "
          "not use outside knowledge and do not make anything up.")

CHAT_URL = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1").rstrip("/")
EMBED_URL = (os.environ.get("RAGQ_EMBED_BASE_URL") or CHAT_URL).rstrip("/")
QDRANT_URL = os.environ.get("QDRANT_URL", "http://127.0.0.1:6333").rstrip("/")
COLLECTION = os.environ.get("RAGQ_COLLECTION", "documents")
TOP_K = int(os.environ.get("RAGQ_TOP_K", "5"))
CHAT_MODEL = os.environ.get("RAGQ_CHAT_MODEL", "gpt-4o-mini")
EMBED_MODEL = os.environ.get("RAGQ_EMBED_MODEL", "text-embedding-3-small")

# One session per process: RQ's default worker forks a work horse per job, so each job opens
# its connections anew (as the LangChain clients of a forked horse did).
session = requests.Session()


def _auth(key_var):
    key = os.environ.get(key_var) or os.environ.get("OPENAI_API_KEY", "")
    return {"Authorization": "Bearer " + key} if key else {}


def answer(query):
    r = session.post(EMBED_URL + "/embeddings", timeout=60, headers=_auth("RAGQ_EMBED_API_KEY"),
                     json={"model": EMBED_MODEL, "input": [query], "encoding_format": "float"})
    r.raise_for_status()
    vector = sorted(r.json()["data"], key=lambda d: d["index"])[0]["embedding"]

    r = session.post("%s/collections/%s/points/query" % (QDRANT_URL, COLLECTION), timeout=60,
                     json={"query": vector, "limit": TOP_K, "with_payload": True})
    r.raise_for_status()
    points = r.json()["result"]["points"]
    docs = [(p.get("payload", {}).get("page_content", ""),
             p.get("payload", {}).get("metadata", {}).get("source", ""), p.get("score"))
            for p in points]

    context = "".join("[%d] (%s) %s\n" % (i + 1, src, " ".join(text.split()))
                      for i, (text, src, _) in enumerate(docs))
    r = session.post(CHAT_URL + "/chat/completions", timeout=120, headers=_auth("OPENAI_API_KEY"),
                     json={"model": CHAT_MODEL, "stream": False,
                           "messages": [{"role": "system", "content": SYSTEM},
                                        {"role": "user",
                                         "content": context + "\nQuestion: " + query}]})
    r.raise_for_status()
    return {"answer": r.json()["choices"][0]["message"]["content"],
            "sources": [{"source": src, "score": score, "text": text[:200]}
                        for text, src, score in docs]}
