"""The seeds' ingest stack, API side: FastAPI (under gunicorn with uvicorn
workers) appending each POST /write to a Redis Stream; 202 once Redis has it."""
import json
import os
import uuid

import redis.asyncio as redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

STREAM = os.environ.get("STREAM", "py:events")
app = FastAPI()
r = redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))


@app.post("/write")
async def write(request: Request):
    try:
        body = json.loads(await request.body())
    except ValueError as e:
        return JSONResponse({"error": {"code": "invalid_json", "message": str(e)}}, status_code=400)
    events = body if isinstance(body, list) else [body]
    for e in events:
        e.setdefault("id", str(uuid.uuid4()))
    await r.xadd(STREAM, {"events": json.dumps(events)})
    return JSONResponse({"accepted": len(events)}, status_code=202)
