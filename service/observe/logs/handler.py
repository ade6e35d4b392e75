"""The stdout handler: every record written at once, access lines in batches.

A write system call per request cost more than formatting the line, and the stdlib's handlers
write (and flush) each record: `MemoryHandler` flushes its target record by record, and a
`QueueHandler` moves the record, the formatting and the write to a thread. Measured
(`python -m bench.logging_cost`, bench/README.md): an access line straight into this buffer
costs about 5 µs; through `QueueHandler` and `QueueListener`, 23 µs in the event loop's thread
and 41 µs in all. So access lines, and only they, stay in a buffer of our own for a moment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .formats import AccessFields


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that batches access lines.

    Records are written and flushed one by one, as `StreamHandler` does. Access lines (one per
    request, `write_access`) stay in the buffer and are flushed within `FLUSH_SECONDS` from the
    running event loop, or with the next record, whichever comes first: a write system call per
    request cost more than formatting the line. uvicorn logs as it shuts down, so a stopped
    server has written every line; a killed one loses at most `FLUSH_SECONDS` of access lines.
    """

    FLUSH_SECONDS = 0.2
    _own: Any = None

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._flush_due = False
        # A buffer of our own on the stream's file: with PYTHONUNBUFFERED (usual in container
        # images) `sys.stdout` writes through, a system call per line whatever we flush.
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # not a file (a test's capture)
            return
        self._own = open(fd, "w", buffering=1 << 16, encoding="utf-8", closefd=False)  # noqa: SIM115
        self.setStream(self._own)

    def close(self) -> None:
        """Flush and let go of our buffer (logging's exit hook and `configure_logging` call
        this); the file itself stays open for its other users."""
        self.flush()
        if self._own is not None:
            self._own.close()
            self.stream = None  # a flush still scheduled finds nothing to do
        super().close()

    def write_access(self, fields: AccessFields) -> None:
        """An access line straight into the stream, no record (see `access.AccessLog`)."""
        line = self.formatter.access_line(time.time(), fields)  # type: ignore[union-attr]
        with self.lock:  # type: ignore[union-attr]
            self.stream.write(line + self.terminator)
        if not self._flush_due:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # a thread or a plain call: no loop to flush later
                self.flush()
                return
            self._flush_due = True
            loop.call_later(self.FLUSH_SECONDS, self._flush_later)

    def _flush_later(self) -> None:
        self._flush_due = False
        self.flush()
