"""The seed stack's API, rebuilt as the Python design ragq replaces had it (DESIGN.md, first
paragraph): FastAPI + RQ on Redis/Valkey, run by uvicorn with 2 workers.  A peer in `make bench`
(bench/run starts it), not part of ragq.

    POST /chat?query=...       -> {"status": "queued", "job_id": "..."}   (RQ's Queue.enqueue)
    GET  /job-status?job_id=.. -> {"result": ...}                         (RQ's Job.fetch)

Handlers are `async def` calling redis-py synchronously on the event loop, as such apps are
commonly written.  Plain `def` handlers (FastAPI's thread pool) were no faster in a spot check
(wrk -c50, 4 s, loaded machine: /chat 2,020 and 1,602 req/s with `async def` against 1,512 and
1,293; /job-status within the noise), so the comparison is not tilted against the seed.  An unknown job id is a 500 (RQ's
NoSuchJobError), as in the original.

Environment: REDIS_URL (redis://127.0.0.1:6379/0).
Run:  uvicorn --app-dir bench/seed app:app --workers 2 --loop uvloop --http httptools \
          --no-access-log --host 127.0.0.1 --port PORT
"""

import os

from fastapi import FastAPI
from redis import Redis
from rq import Queue
from rq.job import Job

from jobs import answer

redis_conn = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
queue = Queue(connection=redis_conn)
app = FastAPI()


@app.post("/chat")
async def chat(query: str):
    job = queue.enqueue(answer, query)
    return {"status": "queued", "job_id": job.get_id()}


@app.get("/job-status")
async def job_status(job_id: str):
    job = Job.fetch(job_id, connection=redis_conn)
    return {"result": job.result}
