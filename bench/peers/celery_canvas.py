"""Celery's canvas, as its users write it: (a) a chord of N md5 tasks and a
callback, R times one after another; (b) C chains of L md5 tasks, all at
once. Prints workflows/s, chains/s and the chord callbacks' wait (from the
last parent's end to the callback's start) as JSON."""
import json
import statistics
import sys
import time
import uuid

from celery import chain, chord, group

from celery_app import chord_done, md5_timed

width, rounds, chains, length = (int(a) for a in sys.argv[1:5])
run = uuid.uuid4().hex

waits = []
start = time.time()
for r in range(rounds):
    res = chord(group(md5_timed.s(f"{run}-{r}-{i}") for i in range(width)))(chord_done.s())
    waits.append(res.get(timeout=600)["wait"])
chords_per_sec = rounds / (time.time() - start)

# Every chain submitted, then every one waited for.
start = time.time()
results = [chain(md5_timed.s(f"{run}-c{c}"), *(md5_timed.s() for _ in range(length - 1))).apply_async()
           for c in range(chains)]
for res in results:
    res.get(timeout=600)
chains_per_sec = chains / (time.time() - start)

print(json.dumps({
    "chords_per_sec": chords_per_sec,
    "chord_wait_ms_p50": statistics.median(waits) * 1000,
    "chord_wait_ms_max": max(waits) * 1000,
    "chains_per_sec": chains_per_sec,
}))
