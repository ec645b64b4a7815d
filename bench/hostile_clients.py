"""Hostile client behaviours against one HTTP address, one at a time, with
the peak RSS of a process sampled while each runs (issue #15: memory stays
bounded whatever clients do).

Usage: python3 hostile_clients.py HOST PORT PID CONNECTIONS SECONDS BEHAVIOUR...
Prints one JSON object: baseline RSS, then per behaviour its peak RSS and
how the server answered. A behaviour whose name starts with `tls_` expects a
TLS listener at the address; `h2_` ones speak HTTP/2 with prior knowledge.
"""

import asyncio
import json
import ssl
import struct
import sys
import time

HOST, PORT, PID = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
CONNS = int(sys.argv[4])
SECONDS = float(sys.argv[5])
BEHAVIOURS = sys.argv[6:]
# The path whose answer is large (the bench seeds tasks with large inputs).
BIG_PATH = b"/tasks?limit=500"


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
    burst = (b"GET " + BIG_PATH + b" HTTP/1.1\r\nHost: x\r\n\r\n") * 200
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


# HTTP/2 by hand: a frame is a 9-byte header and a payload (RFC 9113 §4.1).
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS = 0x1, 0x4


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def get_headers(path: bytes) -> bytes:
    """An HPACK block for GET path: static-table method and scheme, literal
    path and authority without indexing (RFC 7541 §6.2.2)."""
    assert len(path) < 127
    return b"\x82\x86" + b"\x04" + bytes([len(path)]) + path + b"\x01\x01x"


def h2_open(window: bool) -> bytes:
    """The preface and SETTINGS; with `window`, every window as large as the
    protocol allows, so the server may send as much as it will buffer."""
    settings = struct.pack(">HI", 0x4, 0x7FFFFFFF) if window else b""
    out = H2_PREFACE + frame(SETTINGS, 0, 0, settings)
    if window:
        out += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF - 65535))
    return out


async def read_frames(r, outcome: dict, seen: set):
    """Reads frames until the connection ends; notes a GOAWAY's error code."""
    try:
        while True:
            head = await r.readexactly(9)
            length = int.from_bytes(head[:3], "big")
            payload = await r.readexactly(length)
            if head[3] == GOAWAY and "goaway" not in seen:
                seen.add("goaway")
                code = int.from_bytes(payload[4:8], "big")
                key = f"goaway_{code}"
                outcome[key] = outcome.get(key, 0) + 1
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass


async def h2_streams_unread(outcome: dict):
    """HTTP/2 streams asking for a large answer, with every window opened and
    nothing read: what the server buffers per stream is all it holds."""
    _, w = await connect()
    out = h2_open(window=True)
    for i in range(1000):
        out += frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, get_headers(BIG_PATH))
    try:
        w.write(out)
        await asyncio.wait_for(w.drain(), timeout=SECONDS)
        await asyncio.sleep(SECONDS)
    except (asyncio.TimeoutError, ConnectionError, OSError):
        outcome["closed_or_stalled"] = outcome.get("closed_or_stalled", 0) + 1
    w.close()


async def h2_flood(outcome: dict, unit, per_write: int):
    """Writes `unit(i)` frames as fast as the server reads them for SECONDS,
    reading what it answers; notes how many it took before it closed."""
    r, w = await connect()
    seen: set = set()
    reader = asyncio.create_task(read_frames(r, outcome, seen))
    w.write(h2_open(window=False))
    sent = 0
    deadline = time.monotonic() + SECONDS
    try:
        while time.monotonic() < deadline and not reader.done():
            w.write(b"".join(unit(sent + i) for i in range(per_write)))
            sent += per_write
            await asyncio.wait_for(w.drain(), timeout=max(0.01, deadline - time.monotonic()))
    except (asyncio.TimeoutError, ConnectionError, OSError):
        pass
    outcome["frames_sent_max"] = max(outcome.get("frames_sent_max", 0), sent)
    w.close()
    reader.cancel()


async def h2_rapid_reset(outcome: dict):
    """HEADERS then RST_STREAM at once, over and over (CVE-2023-44487)."""
    cancel = struct.pack(">I", 0x8)
    await h2_flood(
        outcome,
        lambda i: frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, get_headers(b"/health"))
        + frame(RST_STREAM, 0, 2 * i + 1, cancel),
        100,
    )


async def h2_control_flood(outcome: dict):
    """PING and empty SETTINGS frames whose acknowledgements are owed."""
    await h2_flood(
        outcome,
        lambda i: frame(PING, 0, 0, struct.pack(">Q", i)) + frame(SETTINGS, 0, 0),
        500,
    )


async def h2_continuation_flood(outcome: dict):
    """One HEADERS without END_HEADERS, then CONTINUATION frames for ever
    (CVE-2024-27316's class): a header block that never ends."""
    first = [True]

    def unit(i):
        if first[0]:
            first[0] = False
            return frame(HEADERS, END_STREAM, 1, get_headers(b"/health"))
        # Literal headers without indexing, new names: 16 KB per frame.
        return frame(CONTINUATION, 0, 1, (b"\x00\x03abc\x64" + b"v" * 100) * 154)

    await h2_flood(outcome, unit, 4)


def tls_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def tls_half_handshake(outcome: dict):
    """A ClientHello, then silence: the server holds its half of a
    handshake until it gives up."""
    _, w = await connect()
    obj = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = tls_context().wrap_bio(obj[0], obj[1], server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    try:
        w.write(obj[1].read())
        await w.drain()
        await asyncio.sleep(SECONDS)
    except (ConnectionError, OSError):
        outcome["closed_by_server"] = outcome.get("closed_by_server", 0) + 1
    w.close()


async def tls_idle(outcome: dict):
    """A finished TLS handshake, then nothing."""
    try:
        _, w = await asyncio.open_connection(HOST, PORT, ssl=tls_context(), server_hostname="localhost")
    except (ConnectionError, OSError, ssl.SSLError):
        outcome["handshake_failed"] = outcome.get("handshake_failed", 0) + 1
        return
    await asyncio.sleep(SECONDS)
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
    for name in BEHAVIOURS:
        report[name] = await run(globals()[name])
    print(json.dumps(report))


asyncio.run(main())
