"""The seed stack's worker process: RQ's default (forking) Worker on the default queue, with
the job module and its libraries imported once in the parent, as RQ's documentation advises
for speed (plain `rq worker` would import them again in every forked work horse).  A seed
deployment runs several of these: RQ runs one job at a time per worker process.

Environment: REDIS_URL, plus jobs.py's.  Usage: worker.py [NAME]
"""

import os
import sys

from redis import Redis
from rq import Queue, Worker

import jobs  # noqa: F401  (preloaded for every work horse)

if __name__ == "__main__":
    conn = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    name = sys.argv[1] if len(sys.argv) > 1 else None
    Worker([Queue(connection=conn)], connection=conn, name=name,
           log_job_description=False).work(logging_level="WARNING")
