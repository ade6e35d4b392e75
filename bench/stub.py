"""The fast upstream: raw ASGI serving Mobile User Info JSON to any bearer (no framework)."""

from __future__ import annotations

import json
import sys

import uvicorn

from service.sandbox.subscribers import SUBSCRIBERS

BODY = json.dumps(SUBSCRIBERS["4790000001"].user).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
