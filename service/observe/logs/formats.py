"""The line formats: one JSON object per line, or a human line for `dev`.

The access line (one per request, so the hot line) has a direct path, `access_line`, which
assembles the JSON text itself from checked values; every other line is a `LogRecord`
formatted the usual way and scrubbed by the redactor last.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from ..tracing import current_trace_id
from . import request_id
from .redact import Redactor

ACCESS_LOGGER = "line_auth_bff.access"
# An access line's values: method, route template, status, duration in ms, client, request id,
# trace id (when tracing is on).
AccessFields = tuple[str, str | None, int, float, str | None, str | None, str | None]

_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds; the date and time part is formatted once a second."""
    second = int(created)
    if second != _second[0]:
        _second[:] = second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{int((created - second) * 1000):03d}+00:00"


def _quoted(value: object) -> str:
    return "null" if value is None else encode_basestring(str(value))


def access_message(fields: AccessFields) -> str:
    return f"{fields[0]} {fields[1] or '(unmatched)'} {fields[2]}"


# The access line's parts that repeat request after request, JSON-quoted once: a method, a
# route template (both from closed sets: the routes' own and the methods that reach them) and
# a status. Before the request id, and after it.
@functools.lru_cache(maxsize=1024)
def _constant_parts(method: str, route: str | None, status: int) -> tuple[str, str]:
    message = _quoted(f"{method} {route or '(unmatched)'} {status}")
    head = f'"level": "info", "logger": "{ACCESS_LOGGER}", "msg": {message},'
    tail = f' "method": {_quoted(method)}, "route": {_quoted(route)}, "status": {status},'
    return head, tail


class _Formatter(logging.Formatter):
    """A line format whose every line but the access line passes the redactor last."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        access_fields = getattr(record, "access", None)
        if access_fields is not None:
            return self.access_line(record.created, access_fields)
        text = self._redact(self.line(record))
        # The trace id joins after the redactor, which would take its 32 hex digits for a
        # token: it is ours, random, and what joins this line to its trace.
        trace_id = current_trace_id()
        return self.with_trace(text, trace_id) if trace_id else text

    def line(self, record: logging.LogRecord) -> str:
        raise NotImplementedError

    @staticmethod
    def with_trace(text: str, trace_id: str) -> str:
        return f"{text} trace_id={trace_id}"

    @staticmethod
    def access_line(created: float, fields: AccessFields) -> str:
        raise NotImplementedError


class JsonFormatter(_Formatter):
    """One JSON object per line: time, level, logger, message, request id, structured fields
    (and the trace id, when there is a trace)."""

    @staticmethod
    def with_trace(text: str, trace_id: str) -> str:
        return f'{{"trace_id": "{trace_id}", {text[1:]}'

    def line(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            out["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)

    @staticmethod
    def access_line(created: float, fields: AccessFields) -> str:
        """The access line, assembled directly. Its values are checked ones: a method token, a
        route template, a status, a duration, the client address and a vetted request id; no
        redaction pass needed."""
        method, route, status, duration_ms, client, rid, trace_id = fields
        head, tail = _constant_parts(method, route, status)
        return (
            f'{{"ts": "{_timestamp(created)}", {head}'
            + (f' "request_id": "{rid}",' if rid else "")
            + (f' "trace_id": "{trace_id}",' if trace_id else "")
            + f'{tail} "duration_ms": {duration_ms}, "client": {_quoted(client)}}}'
        )


class HumanFormatter(_Formatter):
    """`12:00:01 INFO  GET /api/{app}/user-info 200 duration_ms=3.1 client=…` for `dev`."""

    def line(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = getattr(record, "fields", None)
        extra = ""
        if isinstance(fields, dict):
            extra = " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        text = f"{stamp} {record.levelname:<5} {record.getMessage()}{extra}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text

    @staticmethod
    def access_line(created: float, fields: AccessFields) -> str:
        """The same values as the JSON line (a client address may come from a trusted proxy's
        X-Forwarded-For: it is printed as it is, after a space)."""
        stamp = time.strftime("%H:%M:%S", time.localtime(created))
        client = f" client={fields[4]}" if fields[4] else ""
        return f"{stamp} INFO  {access_message(fields)} duration_ms={fields[3]}{client}"
