"""Submits N md5 tasks to Celery from a plain Python client and waits for every
result; prints tasks/s end to end (first submit to last result)."""
import json
import sys
import time
import uuid

from celery_app import md5

n = int(sys.argv[1])
run = uuid.uuid4().hex
start = time.time()
results = [md5.delay(f"bench-{run}-{i}") for i in range(n)]
submitted = time.time()
for r in results:
    r.get(timeout=600)
done = time.time()
print(json.dumps({"tasks": n, "submit_per_sec": n / (submitted - start), "tasks_per_sec": n / (done - start)}))
