"""The seeds' ingest stack, consumer side: XREADGROUP batches from the Redis
Stream, bulk-insert them with asyncpg, XACK after the commit."""
import asyncio
import json
import os

import asyncpg
import redis.asyncio as redis

STREAM = os.environ.get("STREAM", "py:events")
GROUP = "py-ingest"


async def main():
    r = redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    pg = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        await r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError:
        pass
    while True:
        reply = await r.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=100, block=1000)
        if not reply:
            continue
        ids, rows = [], []
        for _, entries in reply:
            for entry_id, fields in entries:
                ids.append(entry_id)
                for e in json.loads(fields[b"events"]):
                    rows.append((str(e["id"]), json.dumps(e)))
        await pg.executemany(
            "INSERT INTO events (id, body, received_at) VALUES ($1, $2::jsonb, now()) "
            "ON CONFLICT (id) DO NOTHING",
            rows,
        )
        await r.xack(STREAM, GROUP, *ids)
        await r.xdel(STREAM, *ids)


asyncio.run(main())
