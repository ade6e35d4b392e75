"""A request's access line, written the cheapest way the logging setup allows.

Where `configure_logging` installed our handler and it is still the only place lines go (the
service as `serve` and `dev` run it), the line goes straight into the handler's buffer: the
logging machinery around a record cost more than the rest of the line (bench/README.md).
Anywhere else (a test's handlers, an application embedding the BFF) it is an ordinary record
on the `line_auth_bff.access` logger, which every handler sees.
"""

from __future__ import annotations

import logging

from .formats import ACCESS_LOGGER, AccessFields, access_message
from .handler import LineHandler

access = logging.getLogger(ACCESS_LOGGER)


class AccessLog:
    """Writes one access line per request."""

    def __init__(self, handler: LineHandler | None = None) -> None:
        self._handler = handler

    def write(self, fields: AccessFields) -> None:
        if not access.isEnabledFor(logging.INFO):
            return
        handler, root = self._handler, logging.root.handlers
        if handler is not None and len(root) == 1 and root[0] is handler and not access.handlers:
            handler.write_access(fields)
            return
        record = logging.LogRecord(
            ACCESS_LOGGER, logging.INFO, "", 0, access_message(fields), None, None
        )
        record.access = fields
        access.handle(record)
