"""`python -m bench.logging_cost`: what one access line costs, ours against the stdlib's way.

Our path writes the line straight into `LineHandler`'s buffer; the stdlib's is a `LogRecord`
through a `QueueHandler` to a `QueueListener` thread that writes with a `StreamHandler`. Both
format with `JsonFormatter` and write to /dev/null. Prints CPU microseconds per line: in the
calling thread (the event loop's, in the service) and for the whole process.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import queue
import time

from service.observe.logs.access import AccessLog
from service.observe.logs.formats import JsonFormatter
from service.observe.logs.handler import LineHandler

FIELDS = ("GET", "/api/{app}/user-info", 200, 3.21, "127.0.0.1", "0123456789abcdef")
LINES = 100_000


async def ours(out: object) -> tuple[float, float]:
    handler = LineHandler(out)
    handler.setFormatter(JsonFormatter())
    logging.root.handlers = [handler]
    return timed(AccessLog(handler), handler.flush)


async def stdlib(out: object) -> tuple[float, float]:
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    target = logging.StreamHandler(out)  # type: ignore[arg-type]
    target.setFormatter(JsonFormatter())
    listener = logging.handlers.QueueListener(lines, target)
    listener.start()
    logging.root.handlers = [logging.handlers.QueueHandler(lines)]
    return timed(AccessLog(None), listener.stop)


def timed(access: AccessLog, finish: object) -> tuple[float, float]:
    thread, process = time.thread_time(), time.process_time()
    for _ in range(LINES):
        access.write(FIELDS)
    finish()  # type: ignore[operator]
    return (
        (time.thread_time() - thread) / LINES * 1e6,
        (time.process_time() - process) / LINES * 1e6,
    )


def main() -> None:
    logging.root.setLevel(logging.INFO)
    with open(os.devnull, "w") as out:
        for name, way in (("LineHandler, direct", ours), ("QueueHandler + QueueListener", stdlib)):
            loop_us, total_us = asyncio.run(way(out))
            print(f"{name}: {loop_us:.1f} µs in the calling thread, {total_us:.1f} µs in all")


if __name__ == "__main__":
    main()
