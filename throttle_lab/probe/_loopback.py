"""An HTTPS origin on loopback whose every phase takes a known time: tests, benchmark, demo.

Each path serves a :class:`Behaviour`: a delay before the server answers the
ClientHello, a delay before the response headers, and a body sent all at once, trickled at
a rate, or replayed from a schedule of ``(seconds after the headers, cumulative bytes)``
(the benchmark replays the packet model's delivery times through a policer, so the probe
sees a policed TCP flow's stalls and bursts without a kernel policer). Failures on
demand: a reset during the handshake, after the request or in the middle of the body, or
a stall.

``throttled_names`` makes the origin its own SNI-reading throttler: it parses only the
*first read* of each connection with the core's single-segment parser (no reassembly,
as the 2021 devices), and when the name there matches, the body is trickled at
``throttle_rate_bps`` whatever the path asked for. That is enough to test the SNI swap and
the split ClientHello before (and without) the emulating proxy.

TLS runs on memory BIOs so that the first read can be inspected before the handshake.
Certificates come from the caller's server context (tests and the benchmark use trustme).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from throttle_lab.core import HelloKind, parse_client_hello

__all__ = ["Behaviour", "LoopbackOrigin"]

_PACE_S = 0.01  # a trickled body is written every 10 ms


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What the origin does for one path."""

    size_bytes: int = 100_000
    ttfb_delay_s: float = 0.0  # from the request to the response headers
    rate_bps: float | None = None  # trickle the body at this rate; None: as fast as possible
    schedule: tuple[tuple[float, int], ...] | None = None  # replay (s after headers, bytes)
    status: int = 200
    failure: str | None = None  # reset_after_request | reset_mid_body | stall_headers | stall_body


@dataclass
class _Connection:
    first_read_sni: str | None = None
    first_read_kind: str = ""
    sni: str | None = None
    path: str = ""
    throttled: bool = False
    bytes_sent: int = 0


def _matches(name: str | None, patterns: Collection[str]) -> bool:
    if not name:
        return False
    return any(name == p or (p.startswith("*.") and name.endswith(p[1:])) for p in patterns)


class LoopbackOrigin:
    """``async with LoopbackOrigin(ctx, {"/photo": Behaviour(...)}) as origin: origin.port``."""

    def __init__(
        self,
        context: ssl.SSLContext,
        routes: Mapping[str, Behaviour],
        *,
        host: str = "127.0.0.1",
        handshake_delay_s: float = 0.0,
        handshake_failure: str | None = None,  # reset | close
        throttled_names: Collection[str] = (),
        throttle_rate_bps: float = 140e3,
        sock: socket.socket | None = None,
    ) -> None:
        self.routes = routes  # any Mapping: the benchmark's draws a fresh body per request
        self.host = host
        self.handshake_delay_s = handshake_delay_s
        self.handshake_failure = handshake_failure
        self.throttled_names = frozenset(throttled_names)
        self.throttle_rate_bps = throttle_rate_bps
        self.connections: list[_Connection] = []
        self._context = context
        self._sni_seen: dict[int, str | None] = {}
        context.sni_callback = self._remember_sni
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0
        self._sock = sock  # a listening socket made elsewhere (another network namespace)

    def _remember_sni(self, tls: Any, name: str | None, _: ssl.SSLContext) -> None:
        self._sni_seen[id(tls)] = name

    async def __aenter__(self) -> LoopbackOrigin:
        if self._sock is not None:
            self._server = await asyncio.start_server(self._handle, sock=self._sock)
        else:
            self._server = await asyncio.start_server(self._handle, self.host, 0, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, path: str, host: str | None = None) -> str:
        return f"https://{host or self.host}:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection = _Connection()
        self.connections.append(connection)
        try:
            await self._serve(reader, writer, connection)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
            pass  # the client went away or sent garbage: nothing to serve
        except asyncio.CancelledError:
            pass  # the origin is closing; a stalled behaviour ends here
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Connection
    ) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        first = await reader.read(65536)
        hello = parse_client_hello(first)
        conn.first_read_kind = hello.kind.value
        conn.first_read_sni = hello.sni if hello.kind is HelloKind.CLIENT_HELLO else None
        conn.throttled = _matches(conn.first_read_sni, self.throttled_names)
        if self.handshake_delay_s:
            await asyncio.sleep(self.handshake_delay_s)
        if self.handshake_failure:
            _abort(writer, reset=self.handshake_failure == "reset")
            return
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self._context.wrap_bio(incoming, outgoing, server_side=True)
        incoming.write(first)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                writer.write(outgoing.read())
                data = await reader.read(65536)
                if not data:
                    return
                incoming.write(data)
        conn.sni = self._sni_seen.pop(id(tls), None)
        writer.write(outgoing.read())

        async def send(data: bytes) -> None:
            tls.write(data)
            writer.write(outgoing.read())
            await writer.drain()

        request = b""
        while b"\r\n\r\n" not in request:
            try:
                request += tls.read(65536)
            except ssl.SSLWantReadError:
                data = await reader.read(65536)
                if not data:
                    return
                incoming.write(data)
        conn.path = request.split(b" ", 2)[1].decode("latin-1")
        behaviour = self.routes.get(conn.path)
        if behaviour is None:
            await send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        await self._respond(behaviour, send, writer, conn)
        # Keep the connection open until the client closes it (it reads TCP_INFO first).
        while await reader.read(65536):
            pass

    async def _respond(
        self, behaviour: Behaviour, send: Any, writer: asyncio.StreamWriter, conn: _Connection
    ) -> None:
        if behaviour.failure == "reset_after_request":
            _abort(writer, reset=True)
            return
        if behaviour.failure == "stall_headers":
            await asyncio.sleep(3600)
        await asyncio.sleep(behaviour.ttfb_delay_s)
        size = behaviour.size_bytes
        reason = "OK" if behaviour.status < 400 else "Error"
        await send(
            f"HTTP/1.1 {behaviour.status} {reason}\r\nContent-Length: {size}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode("ascii")
        )
        if behaviour.status >= 300:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        rate = self.throttle_rate_bps if conn.throttled else behaviour.rate_bps
        schedule: Sequence[tuple[float, int]] = (
            _paced(size, rate)
            if conn.throttled or behaviour.schedule is None
            else behaviour.schedule
        )
        half = size // 2
        for offset, total in schedule:
            total = min(total, size)
            if total <= conn.bytes_sent:
                continue
            delay = started + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if behaviour.failure and conn.bytes_sent >= half:
                if behaviour.failure == "reset_mid_body":
                    _abort(writer, reset=True)
                    return
                await asyncio.sleep(3600)  # stall_body
            await send(b"\0" * (total - conn.bytes_sent))
            conn.bytes_sent = total


def _paced(size: int, rate_bps: float | None) -> list[tuple[float, int]]:
    """A body as fast as possible (64 KB writes) or every 10 ms at ``rate_bps``."""
    if rate_bps is None:
        return [(0.0, min(size, end)) for end in range(65536, size + 65536, 65536)]
    step = max(1, round(rate_bps / 8 * _PACE_S))
    return [(end * 8 / rate_bps, min(size, end)) for end in range(step, size + step, step)]


def _abort(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    """Close at once; ``reset`` sends an RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if reset and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort() if reset else writer.close()
