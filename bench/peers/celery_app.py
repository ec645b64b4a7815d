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
