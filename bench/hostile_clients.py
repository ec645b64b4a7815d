"""Hostile client behaviours against one HTTP address, one at a time, with
the peak RSS of a process sampled while each runs (issue #15: memory stays
bounded whatever clients do).

Usage: python3 hostile_clients.py HOST PORT PID [connections] [seconds]
Prints one JSON object: baseline RSS, then per behaviour its peak RSS and
how the server answered.
"""

import asyncio
import json
import sys
import time

HOST, PORT, PID = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
CONNS = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
SECONDS = float(sys.argv[5]) if len(sys.argv) > 5 else 10.0


def rss_kb() -> int:
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def sample_peak(stop: asyncio.Event) -> int:
    peak = 0
    while not stop.is_set():
        peak = max(peak, rss_kb())
        await asyncio.sleep(0.05)
    return max(peak, rss_kb())


async def connect():
    return await asyncio.open_connection(HOST, PORT, limit=1 << 20)


async def idle(outcome: dict):
    """Open a connection and send nothing."""
    _, w = await connect()
    await asyncio.sleep(SECONDS)
    w.close()


async def slowloris(outcome: dict):
    """A request head one byte at a time, never finished."""
    _, w = await connect()
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-a: b\r\n" * 1000
    try:
        for i in range(int(SECONDS)):
            w.write(head[i : i + 1])
            await w.drain()
            await asyncio.sleep(1)
    except (ConnectionError, OSError):
        outcome["closed_by_server"] = outcome.get("closed_by_server", 0) + 1
    w.close()


async def pipeline_unread(outcome: dict):
    """Pipelined requests, answers never read (the server must stop reading)."""
    _, w = await connect()
    burst = b"GET /tasks?limit=100 HTTP/1.1\r\nHost: x\r\n\r\n" * 200
    sent = 0
    deadline = time.monotonic() + SECONDS
    try:
        while time.monotonic() < deadline:
            w.write(burst)
            await asyncio.wait_for(w.drain(), timeout=max(0.01, deadline - time.monotonic()))
            sent += len(burst)
    except (asyncio.TimeoutError, ConnectionError, OSError):
        pass
    outcome["bytes_sent_max"] = max(outcome.get("bytes_sent_max", 0), sent)
    w.close()


async def slow_body(outcome: dict):
    """A large declared body sent a little at a time."""
    _, w = await connect()
    w.write(
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000\r\n\r\n"
    )
    try:
        for _ in range(int(SECONDS * 2)):
            w.write(b"x" * 1024)
            await w.drain()
            await asyncio.sleep(0.5)
    except (ConnectionError, OSError):
        outcome["closed_by_server"] = outcome.get("closed_by_server", 0) + 1
    w.close()


async def big_heads(outcome: dict):
    """Heads just under and over the size limit, as fast as answered."""
    r, w = await connect()
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-pad: " + b"a" * 60000 + b"\r\n\r\n"
    deadline = time.monotonic() + SECONDS
    try:
        while time.monotonic() < deadline:
            w.write(head)
            await w.drain()
            status = await asyncio.wait_for(r.readline(), timeout=5)
            code = status.split(b" ")[1].decode() if status.count(b" ") else "closed"
            outcome[code] = outcome.get(code, 0) + 1
            await r.read(65536)
            w.close()
            r, w = await connect()
    except (asyncio.TimeoutError, ConnectionError, OSError, IndexError):
        pass
    w.close()


async def run(behaviour) -> dict:
    outcome: dict = {}
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_peak(stop))
    tasks = []
    opened = 0
    for _ in range(CONNS):
        tasks.append(asyncio.create_task(behaviour(outcome)))
        opened += 1
        if opened % 200 == 0:
            await asyncio.sleep(0.01)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failed = sum(1 for r in results if isinstance(r, BaseException))
    stop.set()
    peak = await sampler
    await asyncio.sleep(1)
    return {"peak_rss_kb": peak, "after_rss_kb": rss_kb(), "client_errors": failed, **outcome}


async def main():
    report = {"connections": CONNS, "seconds": SECONDS, "baseline_rss_kb": rss_kb()}
    for behaviour in (idle, slowloris, pipeline_unread, slow_body, big_heads):
        report[behaviour.__name__] = await run(behaviour)
    print(json.dumps(report))


asyncio.run(main())
