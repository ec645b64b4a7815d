"""Submits N HTTP-delivery tasks to Celery and waits for every result;
prints tasks/s end to end (first submit to last result)."""
import json
import sys
import time
import uuid

from celery_app import deliver

n = int(sys.argv[1])
run = uuid.uuid4().hex
start = time.time()
results = [deliver.delay({"n": i, "run": run}) for i in range(n)]
submitted = time.time()
for r in results:
    r.get(timeout=600)
done = time.time()
print(json.dumps({"tasks": n, "submit_per_sec": n / (submitted - start), "tasks_per_sec": n / (done - start)}))
