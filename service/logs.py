"""Logging: JSON lines (or a human format for `dev`), request ids, and the redaction layer.

Log calls never pass secrets on purpose; `Redactor` is the net under that rule. Every line is
formatted first and scrubbed last, tracebacks included, so a token that reaches an exception
message or a library's log line still never reaches the output.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import problem_response

log = logging.getLogger("line_auth_bff")
access = logging.getLogger("line_auth_bff.access")

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SENSITIVE_PARAMS = (
    r"code|state|handoff|handoff_code|code_verifier|access_token|refresh_token|id_token|"
    r"session_token|client_secret|password|token"
)
_NAMED = re.compile(
    # Authorization header values
    r"(?P<scheme>\b(?:[Bb]earer|[Bb]asic))\s+[A-Za-z0-9._~+/=-]+"
    # query/form parameters and JSON members that carry secrets
    rf"|(?P<kv>\b(?:{_SENSITIVE_PARAMS})=)[^&\s\"';,]+"
    rf"|(?P<json>\"(?:{_SENSITIVE_PARAMS})\"\s*:\s*)\"[^\"]*\""
    # cookie and set-cookie header values
    r"|(?P<cookie>\b(?:[Ss]et-)?[Cc]ookie\b['\"]?\s*[:=,]\s*)[^\n]+"
)
# The names above, lower-cased: a line without any of them skips `_NAMED` (most lines do).
_NAME_HINTS = ("bearer", "basic", "cookie", *_SENSITIVE_PARAMS.split("|"))
# Anything shaped like a random token: 24+ base64url characters, not all lower-case.
_BLOB = re.compile(r"[A-Za-z0-9_-]{24,}")


class Redactor:
    """Scrubs secrets from formatted log text: known literals and anything shaped like one."""

    def __init__(self, literals: Iterable[str] = ()) -> None:
        self._literals = sorted({s for s in literals if len(s) >= 6}, key=len, reverse=True)

    def add(self, literals: Iterable[str]) -> None:
        self._literals = sorted(
            {*self._literals, *(s for s in literals if len(s) >= 6)}, key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        for literal in self._literals:
            if literal in text:
                text = text.replace(literal, "[secret]")
        lower = text.lower()
        if any(hint in lower for hint in _NAME_HINTS):
            text = _NAMED.sub(_replace_named, text)
        return _BLOB.sub(_replace_blob, text)


def _replace_named(match: re.Match[str]) -> str:
    for group in ("scheme", "kv", "json", "cookie"):
        prefix = match.group(group)
        if prefix is not None:
            quote = '"[redacted]"' if group == "json" else "[redacted]"
            return f"{prefix}{' ' if group == 'scheme' else ''}{quote}"
    return match.group(0)


def _replace_blob(match: re.Match[str]) -> str:
    blob = match.group(0)
    if _UUID.match(blob) or not any(c.isdigit() or c.isupper() for c in blob):
        return blob  # a request id or a snake_case identifier
    return "[redacted]"


REDACTOR = Redactor()

# An access line's values: method, route template, status, duration in ms, client, request id.
AccessFields = tuple[str, str | None, int, float, str | None, str | None]


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds; the date and time part is formatted once a second."""
    second = int(created)
    if second != _second[0]:
        _second[:] = second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{int((created - second) * 1000):03d}+00:00"


def _quoted(value: object) -> str:
    return "null" if value is None else encode_basestring(str(value))


def _access_message(fields: AccessFields) -> str:
    return f"{fields[0]} {fields[1] or '(unmatched)'} {fields[2]}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        access_fields = getattr(record, "access", None)
        if access_fields is not None:
            return self.access_line(record.created, access_fields)
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
        return REDACTOR(json.dumps(out, default=str, ensure_ascii=False))

    @staticmethod
    def access_line(created: float, fields: AccessFields) -> str:
        """The access line, assembled directly (one per request, so it is the hot line). Its
        values are checked ones: a method token, a route template, a status, a duration, the
        client address and a vetted request id; no redaction pass needed."""
        method, route, status, duration_ms, client, rid = fields
        return (
            f'{{"ts": "{_timestamp(created)}", "level": "info", "logger": "{access.name}",'
            f' "msg": {_quoted(_access_message(fields))},'
            + (f' "request_id": "{rid}",' if rid else "")
            + f' "method": {_quoted(method)}, "route": {_quoted(route)}, "status": {status},'
            f' "duration_ms": {duration_ms}, "client": {_quoted(client)}}}'
        )


class HumanFormatter(logging.Formatter):
    """`12:00:01 INFO  GET /api/{app}/user-info 200 duration_ms=3.1 client=…` for `dev`."""

    def format(self, record: logging.LogRecord) -> str:
        access_fields = getattr(record, "access", None)
        if access_fields is not None:
            return self.access_line(record.created, access_fields)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = getattr(record, "fields", None)
        extra = ""
        if isinstance(fields, dict):
            extra = " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        text = f"{stamp} {record.levelname:<5} {record.getMessage()}{extra}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return REDACTOR(text)

    @staticmethod
    def access_line(created: float, fields: AccessFields) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(created))
        client = f" client={fields[4]}" if fields[4] else ""
        line = f"{stamp} INFO  {_access_message(fields)} duration_ms={fields[3]}{client}"
        return REDACTOR(line)


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
        """An access line straight into the stream, no record (see `log_access`)."""
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


_line_handler: list[LineHandler] = []  # the one `configure_logging` installed, if any


def log_access(fields: AccessFields) -> None:
    """One access line. Where our handler is the only place lines go (the service as run by
    the CLI), straight into its stream: the logging machinery around a record cost more than
    the rest of the line (bench/README.md). Anywhere else, as a record every handler sees."""
    if not access.isEnabledFor(logging.INFO):
        return
    root = logging.root.handlers
    if _line_handler and len(root) == 1 and root[0] is _line_handler[0] and not access.handlers:
        _line_handler[0].write_access(fields)
        return
    record = logging.LogRecord(
        access.name, logging.INFO, "", 0, _access_message(fields), None, None
    )
    record.access = fields
    access.handle(record)


def configure_logging(fmt: str, level: str, literals: Iterable[str] = ()) -> None:
    """Route every logger (ours, uvicorn's, libraries') through one redacting stdout handler."""
    REDACTOR.add(literals)
    # We log neither source lines nor thread/process ids: skip collecting them per record.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = LineHandler(sys.stdout)
    handler.setFormatter(HumanFormatter() if fmt == "human" else JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_bff", False):
            root.removeHandler(old)
            old.close()
    handler._bff = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    _line_handler[:] = [handler]
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


def event(message: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line (auth events, failures); fields must be safe to log."""
    log.log(level, message, extra={"fields": fields})


def new_request_id() -> str:
    """16 hex digits; a correlation id, not a secret, so no system-entropy call per request."""
    return f"{random.getrandbits(64):016x}"


def route_template(scope: Scope, routes: Sequence[Any] = ()) -> str | None:
    """The route template the request matched. A request refused before routing (CORS/CSRF,
    https, rate limits) has none in its scope yet: the first of `routes` (Starlette routes)
    whose pattern and method fit names it. A 404 stays None."""
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path", None)
    path, method = scope["path"], scope["method"]
    for candidate in routes:
        if method in (candidate.methods or ()) and candidate.path_regex.match(path):
            return str(candidate.path)
    return None


class AccessLog:
    """Pure ASGI, outermost: request id in and out, one log line per request with its route
    template, and the last word on unexpected errors (a 500 problem+json that still carries the
    request id, and a redacted traceback in the log that names it)."""

    def __init__(
        self,
        app: ASGIApp,
        on_error: Callable[[str], None] = lambda code: None,
        routes: Sequence[Any] = (),
    ) -> None:
        self.app = app
        self._on_error = on_error
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                # Safe to log as is: the charset is fixed, and nothing the redactor would take
                # for a token (a client that puts its session id here gets a new id instead).
                rid = text if _REQUEST_ID.match(text) and REDACTOR(text) == text else None
                break
        rid = rid or new_request_id()
        token = request_id.set(rid)
        header = (b"x-request-id", rid.encode())
        status = 0
        started = time.perf_counter()
        logged = False

        def access_line() -> None:
            # Written when the response is complete, so its duration and its place among the
            # lines leave out any background task that runs after it (Telenor's logout).
            nonlocal logged
            logged = True
            client = scope.get("client")
            log_access(
                (
                    scope["method"],
                    route_template(scope, self._routes),
                    status,
                    round((time.perf_counter() - started) * 1000, 2),
                    client[0] if client else None,
                    rid,
                )
            )

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
                await send(message)
                return
            await send(message)
            if not message.get("more_body") and not logged:
                access_line()

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            route = route_template(scope, self._routes)
            log.error("unexpected error", exc_info=exc, extra={"fields": {"route": route}})
            self._on_error("internal")
            if status:  # the response has begun: all we can do is end the connection
                raise
            await problem_response("internal", "Something went wrong on our side.")(
                scope, receive, send_with_id
            )
        finally:
            if not logged:  # no complete response (a disconnect, a failure mid-response)
                access_line()
            request_id.reset(token)
