"""Logging: JSON lines (or a human format for `dev`), one access line per request, and a
redaction layer under every line. One module a job:

- `redact`: the redaction layer (configured secrets, and anything shaped like a secret)
- `formats`: the JSON and human line formats, with the access line's direct path
- `handler`: the stdout handler that batches access lines
- `access`: a request's access line, written the cheapest way the setup allows
- `setup`: every logger (ours, uvicorn's, libraries') through one redacting handler

`request_id` below is the current request's id; every line written while it is set names it.
"""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
