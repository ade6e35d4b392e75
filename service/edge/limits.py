"""Limits on what a client sends (the request head, cut off as it arrives, and the body) and
on what one process takes on at once (the in-flight limit: load shedding).

uvicorn's httptools protocol has no bound on the request head at all (a 32 MiB header is
buffered, parsed and served, and the parser's copying stalls the event loop on the way), and
its h11 protocol answers an oversized one with a bare 400. The two protocol classes here count
the head's bytes *before* the parser sees them and answer 431 problem+json past
`BFF_MAX_HEADER_BYTES`, closing the connection. `read_body` refuses a body past
`BFF_MAX_BODY_BYTES` with 413: at once when Content-Length announces it, and as soon as a
chunked body passes the cap, so nothing past the cap is ever read.

`Admission` holds at most `BFF_MAX_IN_FLIGHT` requests in flight; one more waits up to
`BFF_SHED_AFTER_MS` for a slot (a slot freed goes to the longest waiter, so a brief burst
leaves no slot idle), and is refused 503 `overloaded` with `Retry-After` when none comes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from starlette.types import Message, Receive
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..contract.scope import RequestScope
from ..kit.errors import CATALOG, BffError, problem_body

log = logging.getLogger("line_auth_bff")
DEFAULT_HEADER_BYTES = 32768
_BLANK = (b"\r", b"\n")


class _HeadCap:
    """Mixed in before a uvicorn protocol: counts a request head's bytes as they arrive
    (`_head_too_large`), across reads, and refuses a head past the cap."""

    _cap = DEFAULT_HEADER_BYTES
    _head_bytes = 0
    _in_head = True
    _begun = False  # a byte other than CR or LF has arrived
    _tail = b""  # the last bytes of the previous read: a "\r\n\r\n" may straddle two reads
    _refused = False
    transport: Any
    app_state: dict[str, Any]

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)  # type: ignore[call-arg]  # the protocol class after this mixin
        # uvicorn hands every protocol its Config; h11's own head bound is the same setting.
        self._cap = config.h11_max_incomplete_event_size or DEFAULT_HEADER_BYTES

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._head_too_large(data):
            self._refuse()
            return
        super().data_received(data)  # type: ignore[misc]  # the protocol class after this mixin

    def _next_head(self) -> None:
        """A request is over: the next bytes begin another head. (In a pipelined read, the
        rest of that read is not counted: the bound is the cap plus one read.)"""
        self._head_bytes, self._in_head, self._begun, self._tail = 0, True, False, b""

    def _head_too_large(self, data: bytes) -> bool:
        if not self._in_head:
            return False
        if not self._begun:
            # Parsers skip blank lines before a request line (RFC 9112 §2.2): they are part of
            # the head, but their CRLFs must not read as its end.
            start = data.lstrip(b"\r\n") if data[:1] in _BLANK else data
            self._head_bytes += len(data) - len(start)
            if not start:
                return self._head_bytes > self._cap
            self._begun = True
            data = start
        seen = self._tail + data if self._tail else data
        end = seen.find(b"\r\n\r\n")
        if end >= 0:
            self._in_head = False
            return self._head_bytes + end + 4 - len(self._tail) > self._cap
        self._head_bytes += len(data)
        self._tail = seen[-3:]
        return self._head_bytes > self._cap

    def _refuse(self) -> None:
        """431 problem+json and close; whatever else the client sends is dropped."""
        self._refused = True
        status, title = CATALOG["header_too_large"]
        body = problem_body(
            "header_too_large", f"At most {self._cap} bytes of request line and headers."
        )
        head = (
            f"HTTP/1.1 {status} Request Header Fields Too Large\r\n"
            "content-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()
        log.warning(title, extra={"fields": {"reason": "header_too_large", "cap": self._cap}})
        # uvicorn hands each connection the lifespan's state: count it as every error is.
        services = self.app_state.get("services")
        if services is not None:
            services.responder.count("header_too_large")


class HttpToolsWithHeadCap(_HeadCap, HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request head."""

    def on_message_complete(self) -> None:
        self._next_head()
        super().on_message_complete()


class H11WithHeadCap(_HeadCap, H11Protocol):
    """uvicorn's h11 protocol with the same bound, answered with 431 instead of h11's 400."""

    def on_response_complete(self) -> None:
        self._next_head()
        super().on_response_complete()


PROTOCOLS: dict[str, type[HttpToolsProtocol | H11Protocol]] = {
    "httptools": HttpToolsWithHeadCap,
    "h11": H11WithHeadCap,
}


async def read_body(req: RequestScope, receive: Receive, max_bytes: int) -> Receive | None:
    """The request's body, read here up to `max_bytes` and handed on whole as a new `receive`
    (None if the client went away meanwhile); a longer one is refused: at once when
    Content-Length announces it, as soon as a chunked body passes the cap otherwise. Only
    called for a request that announces a body."""
    if req.content_length is not None and req.content_length > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: nobody to answer
            return None
        body += message.get("body", b"")
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
        if not message.get("more_body"):
            return _replay(bytes(body), receive)


def _too_large(max_bytes: int) -> BffError:
    # `Connection: close`: the unread rest of the body must not be parsed as a request.
    return BffError(
        "body_too_large",
        f"At most {max_bytes} bytes of request body.",
        headers={"Connection": "close"},
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body already read, then whatever the client does next."""
    pending: Message | None = {"type": "http.request", "body": body, "more_body": False}

    async def replay() -> Message:
        nonlocal pending
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return replay


class Admission:
    """The in-flight limit of one process. Below `limit` (or for a request that is never
    shed) the caller takes a slot itself, `in_flight += 1`: the hot path pays a compare. At
    the limit, `wait()` is true once a slot is handed over, false when none came in time.
    Every slot taken is given back with one `leave()`."""

    def __init__(self, limit: int, wait_seconds: float) -> None:
        self.limit = limit or 1 << 62
        self._wait = wait_seconds
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def wait(self) -> bool:
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(slot)
        try:
            await asyncio.wait((slot,), timeout=self._wait)
        except BaseException:  # cancelled while waiting: give back a slot handed over
            if slot.done() and not slot.cancelled():
                self.leave()
            slot.cancel()
            raise
        if slot.done():
            return True  # handed over by `leave`: in_flight already counts it
        slot.cancel()  # `leave` skips it
        return False

    def leave(self) -> None:
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_result(None)  # the slot passes on; in_flight stays
                return
        self.in_flight -= 1
