"""The ceiling: the least work a proxied call needs, as raw ASGI on the same uvicorn.

Read the session cookie, one Redis GET, one keep-alive upstream GET (aiohttp), return the body.
No framework, no checks, no decryption, no logging, no metrics.
"""

from __future__ import annotations

import sys

import aiohttp
import uvicorn
from redis.asyncio import Redis

PORT, REDIS_URL, UPSTREAM, KEY = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
state: dict[str, object] = {}


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                state["redis"] = Redis.from_url(REDIS_URL)
                state["http"] = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=200, limit_per_host=200)
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await state["http"].close()  # type: ignore[attr-defined]
                await state["redis"].aclose()  # type: ignore[attr-defined]
                await send({"type": "lifespan.shutdown.complete"})
                return
    cookie = next((v for k, v in scope["headers"] if k == b"cookie"), b"")
    token = cookie.partition(b"=")[2]
    blob = await state["redis"].get(KEY if token else "missing")  # type: ignore[attr-defined]
    async with state["http"].get(  # type: ignore[attr-defined]
        UPSTREAM, headers={"Authorization": f"Bearer {len(blob or b'')}"}
    ) as upstream:
        body = await upstream.read()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=PORT,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
