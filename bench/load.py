"""A bounded load generator for drills and overload runs: keep-alive HTTP/1.1 on raw asyncio
streams (plain or TLS), a fixed number of closed-loop clients, for a fixed time.

Unlike wrk it can behave like the clients the BFF expects: with `honour_retry_after`, a client
that gets a 503 with `Retry-After` waits that long before its next request (the JS client and
the mobile guidance do). Each client has its own keep-alive connection and reconnects when the
server closes it; a request that gets no answer within `request_timeout` counts as timed out. Every
answer is kept as (status, latency, a chosen response header) for the caller to count.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Outcome:
    status: int  # 0: no answer (connection refused or reset, or timed out)
    latency: float  # seconds
    mark: str = ""  # the value of `mark_header` (which replica answered), if asked for
    error: str = ""  # for status 0: "timeout" or the exception's name
    retry_after: bool = False  # the answer had a Retry-After header


@dataclass
class Load:
    """What one run saw."""

    seconds: float
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.outcomes)

    def count(self, pred: Callable[[Outcome], bool]) -> int:
        return sum(1 for o in self.outcomes if pred(o))

    @property
    def ok(self) -> int:
        return self.count(lambda o: 200 <= o.status < 400)

    @property
    def shed(self) -> int:
        """503s with Retry-After are the service saying "later", on purpose."""
        return self.count(lambda o: o.status == 503)

    @property
    def failed(self) -> int:
        """Anything that is neither an answer nor a 503: no answer, a 5xx other than 503, a 4xx."""
        return self.count(lambda o: not (200 <= o.status < 400 or o.status == 503))

    @property
    def goodput(self) -> float:
        return self.ok / self.seconds

    def percentile(self, p: float, pred: Callable[[Outcome], bool] | None = None) -> float:
        values = sorted(o.latency for o in self.outcomes if pred is None or pred(o))
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(len(values) * p))]

    def statuses(self) -> Counter[int]:
        return Counter(o.status for o in self.outcomes)

    def marks(self) -> Counter[str]:
        return Counter(o.mark for o in self.outcomes if o.mark)

    def summary(self) -> str:
        ok = lambda o: 200 <= o.status < 400  # noqa: E731
        shed = lambda o: o.status == 503  # noqa: E731
        return (
            f"sent {self.sent}, ok {self.ok}, 503 {self.shed}, failed {self.failed}; "
            f"goodput {self.goodput:.0f}/s; p50 {self.percentile(0.5, ok) * 1000:.1f} ms, "
            f"p99 {self.percentile(0.99, ok) * 1000:.1f} ms (ok), "
            f"503 p99 {self.percentile(0.99, shed) * 1000:.1f} ms"
        )


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, dict[bytes, bytes]]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, headers


async def run(
    host: str,
    port: int,
    paths: Sequence[tuple[str, dict[str, str]]],
    *,
    clients: int,
    seconds: float,
    server_name: str | None = None,
    tls: ssl.SSLContext | None = None,
    request_timeout: float = 5.0,
    honour_retry_after: bool = False,
    mark_header: str = "",
    until: Callable[[], bool] | None = None,
) -> Load:
    """`clients` loops, each sending GETs for `paths` in turn (client i starts at path i), for
    `seconds` (or until `until()` is true, checked between requests, at most `seconds`)."""
    load = Load(seconds)
    name = server_name or host
    raws = []
    for path, headers in paths:
        lines = [f"GET {path} HTTP/1.1", f"Host: {name}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        raws.append(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    mark = mark_header.lower().encode()
    deadline = time.monotonic() + seconds

    async def client(i: int) -> None:
        reader = writer = None
        n = i
        while time.monotonic() < deadline and not (until and until()):
            raw = raws[n % len(raws)]
            n += 1
            began = time.monotonic()
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(
                            host, port, ssl=tls, server_hostname=name if tls else None
                        ),
                        request_timeout,
                    )
                assert reader is not None
                status, headers = await asyncio.wait_for(
                    _request(reader, writer, raw), request_timeout
                )
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                error = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                load.outcomes.append(Outcome(0, time.monotonic() - began, error=error))
                if writer is not None:
                    writer.close()
                reader = writer = None
                if not isinstance(exc, TimeoutError):
                    await asyncio.sleep(0.01)  # a refused connection: don't spin
                continue
            load.outcomes.append(
                Outcome(
                    status,
                    time.monotonic() - began,
                    headers.get(mark, b"").decode(),
                    retry_after=b"retry-after" in headers,
                )
            )
            if headers.get(b"connection", b"").lower() == b"close":
                writer.close()
                reader = writer = None
            if honour_retry_after and status == 503 and b"retry-after" in headers:
                await asyncio.sleep(float(headers[b"retry-after"]))
        if writer is not None:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    load.seconds = time.monotonic() - started
    return load
