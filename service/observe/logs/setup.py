"""Logging setup for the service's processes: every logger through one redacting handler."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from .access import AccessLog
from .formats import HumanFormatter, JsonFormatter
from .handler import LineHandler
from .redact import Redactor


def configure_logging(fmt: str, level: str, secrets: Iterable[str] = ()) -> AccessLog:
    """Route every logger (ours, uvicorn's, libraries') through one stdout handler whose lines
    are scrubbed of `secrets` (the configured client secrets) and of anything shaped like one;
    returns the access log that writes into it."""
    # We log neither source lines nor thread/process ids: skip collecting them per record.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    redactor = Redactor(secrets)
    handler = LineHandler(sys.stdout)
    handler.setFormatter(HumanFormatter(redactor) if fmt == "human" else JsonFormatter(redactor))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, LineHandler):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # We log each request ourselves; uvicorn's access line and httpx's request line (which
    # carries URLs) add nothing but risk. uvicorn builds its line's arguments whenever its
    # logger has a handler anywhere up the tree, so it gets none.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False
    for noisy in ("httpx", "httpcore", "aiohttp", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return AccessLog(handler)
