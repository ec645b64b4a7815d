"""The seeds' task stack: a Celery app with a Redis broker and result backend,
doing the same md5 task weir does."""
import hashlib
import os

from celery import Celery

REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("weir_bench", broker=REDIS, backend=REDIS)
app.conf.update(task_ignore_result=False, worker_prefetch_multiplier=4, broker_connection_retry_on_startup=True)


@app.task(name="md5")
def md5(s):
    return {"md5": hashlib.md5(s.encode()).hexdigest()}


# HTTP delivery: the same POST weir's http handler makes, over one pooled
# session per worker process.
import requests  # noqa: E402

_session = requests.Session()
RECEIVER = os.environ.get("RECEIVER_URL", "http://127.0.0.1:9/")


@app.task(name="deliver", bind=True, max_retries=3)
def deliver(self, payload):
    r = _session.post(RECEIVER, json=payload, timeout=30)
    if r.status_code >= 500 or r.status_code in (408, 425, 429):
        raise self.retry(countdown=1)
    return {"status": r.status_code}


# Canvas: a timed md5 (its result says when it ended) and a chord callback
# that says how long after its last parent's end it started.
import time  # noqa: E402


@app.task(name="md5_timed")
def md5_timed(s, *_parent):
    return {"md5": hashlib.md5(str(s).encode()).hexdigest(), "ended": time.time()}


@app.task(name="chord_done")
def chord_done(results):
    started = time.time()
    return {"parents": len(results), "wait": started - max(r["ended"] for r in results)}
