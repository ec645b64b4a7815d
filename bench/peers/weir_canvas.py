"""The same canvas as celery_canvas.py, as weir workflows through the
stdlib client: (a) a fan-out of N md5 steps into a noop callback, R times
one after another; (b) C chains of L md5 steps, submitted from 16 threads
and waited for. The callback's wait is its step's started_at minus its
last parent's completed_at, read from the finished workflow (as Celery's
callback reports its own). Prints JSON like celery_canvas.py."""
import json
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../clients/python"))
from weir_client import Client, chain, chord, group, step  # noqa: E402

url = sys.argv[1]
width, rounds, chains, length = (int(a) for a in sys.argv[2:6])
run = uuid.uuid4().hex


def ts(t, field):
    return datetime.fromisoformat(t[field].replace("Z", "+00:00")).timestamp()


def fan_in_wait(finished, callback="done"):
    """The callback's start minus its last parent's end, in seconds."""
    steps = {s["id"]: s for s in finished["steps"]}
    last = max(ts(s, "completed_at") for step_id, s in steps.items() if step_id != callback)
    return ts(steps[callback], "started_at") - last


weir = Client(url)
waits = []
start = time.time()
for r in range(rounds):
    flow = chord(group(*(step("md5", {"string": f"{run}-{r}-{i}"}) for i in range(width))),
                 step("noop", {}, id="done"))
    accepted = weir.workflow(flow)
    finished = weir.wait_workflow(accepted["workflow_id"], timeout=600)
    assert finished["status"] == "succeeded", finished["status"]
    waits.append(fan_in_wait(finished))
chords_per_sec = rounds / (time.time() - start)


def submit_chain(c):
    flow = chain(*(step("md5", {"string": f"{run}-c{c}-{i}"}) for i in range(length)))
    return Client(url).workflow(flow)["workflow_id"]


def wait(workflow_id):
    got = Client(url).wait_workflow(workflow_id, timeout=600)
    assert got["status"] == "succeeded", got["status"]


# Every chain submitted, then every one waited for (as Celery's client does).
start = time.time()
with ThreadPoolExecutor(16) as pool:
    ids = list(pool.map(submit_chain, range(chains)))
    list(pool.map(wait, ids))
chains_per_sec = chains / (time.time() - start)

out = {
    "chords_per_sec": chords_per_sec,
    "chord_wait_ms_p50": statistics.median(waits) * 1000,
    "chord_wait_ms_max": max(waits) * 1000,
    "chains_per_sec": chains_per_sec,
}
if len(sys.argv) > 6:
    # One wide fan-out into one fan-in: time to finish and the fan-in's wait.
    big = int(sys.argv[6])
    start = time.time()
    flow = chord(group(*(step("md5", {"string": f"{run}-big-{i}"}) for i in range(big))),
                 step("noop", {}, id="done"))
    accepted = weir.workflow(flow)
    finished = weir.wait_workflow(accepted["workflow_id"], timeout=900)
    assert finished["status"] == "succeeded", finished["status"]
    out["wide_seconds"] = time.time() - start
    out["wide_fan_in_wait_ms"] = fan_in_wait(finished) * 1000
print(json.dumps(out))
