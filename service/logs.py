"""Logging: JSON lines (or a human format for `dev`), request ids, and the redaction layer.

Log calls never pass secrets on purpose; `Redactor` is the net under that rule. Every line is
formatted first and scrubbed last, tracebacks included, so a token that reaches an exception
message or a library's log line still never reaches the output.
"""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
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
        text = json.dumps(out, default=str, ensure_ascii=False)
        # Access lines are built only from checked values (route template, status, method,
        # client address, a vetted request id); every other line is scrubbed.
        return text if record.name == access.name else REDACTOR(text)


_IN_MESSAGE = frozenset({"method", "route", "status"})


class HumanFormatter(logging.Formatter):
    """`12:00:01 INFO  GET /api/{app}/user-info 200 duration_ms=3.1 client=…` for `dev`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = getattr(record, "fields", None)
        extra = ""
        if isinstance(fields, dict):
            extra = " " + " ".join(
                f"{k}={v}" for k, v in fields.items() if v is not None and k not in _IN_MESSAGE
            )
        text = f"{stamp} {record.levelname:<5} {record.getMessage()}{extra}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return REDACTOR(text)


def configure_logging(fmt: str, level: str, literals: Iterable[str] = ()) -> None:
    """Route every logger (ours, uvicorn's, libraries') through one redacting stdout handler."""
    REDACTOR.add(literals)
    # We log neither source lines nor thread/process ids: skip collecting them per record.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(HumanFormatter() if fmt == "human" else JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_bff", False):
            root.removeHandler(old)
    handler._bff = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # We log each request ourselves; uvicorn's access line and httpx's request line (which
    # carries URLs) add nothing but risk.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for noisy in ("httpx", "httpcore", "aiohttp", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event(message: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line (auth events, failures); fields must be safe to log."""
    log.log(level, message, extra={"fields": fields})


def new_request_id() -> str:
    """16 hex digits; a correlation id, not a secret, so no system-entropy call per request."""
    return f"{random.getrandbits(64):016x}"


class AccessLog:
    """Pure ASGI, outermost: request id in and out, one log line per request with its route
    template, and the last word on unexpected errors (a 500 problem+json that still carries the
    request id, and a redacted traceback in the log that names it)."""

    def __init__(self, app: ASGIApp, on_error: Callable[[str], None] = lambda code: None) -> None:
        self.app = app
        self._on_error = on_error

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

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *(h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"),
                    header,
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            route = getattr(scope.get("route"), "path", None)
            log.error("unexpected error", exc_info=exc, extra={"fields": {"route": route}})
            self._on_error("internal")
            if status:  # the response has begun: all we can do is end the connection
                raise
            await problem_response("internal", "Something went wrong on our side.")(
                scope, receive, send_with_id
            )
        finally:
            if access.isEnabledFor(logging.INFO):
                route = scope.get("route")
                client = scope.get("client")
                access.info(
                    "%s %s %d",
                    scope["method"],
                    getattr(route, "path", "(unmatched)"),
                    status,
                    extra={
                        "fields": {
                            "method": scope["method"],
                            "route": getattr(route, "path", None),
                            "status": status,
                            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                            "client": client[0] if client else None,
                        }
                    },
                )
            request_id.reset(token)
