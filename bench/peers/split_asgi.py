# An application answering `ok` as uvicorn sends it: the head in one write,
# the body in the next (what bench/lb_split.sh puts behind each proxy).
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"3")]})
    await send({"type": "http.response.body", "body": b"ok\n"})
