"""Plain helpers for the proxy and origin tests (constants, a TLS client, rates).

A module of its own, not ``conftest``: tests/core has a conftest too, and two top-level
``conftest`` modules clash when a test imports from one by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from throttle_lab.emu.proxy import ClassMap, ThrottlingProxy, parse_class_mapping
from throttle_lab.scenario import Scenario, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
MOBILE = "127.0.1.5"
FIXED = "127.0.2.5"
# ``make_proxy(scenario, **config)``: see the fixture in conftest.
ProxyFactory = Callable[..., contextlib.AbstractAsyncContextManager[ThrottlingProxy]]
CLASS_MAP = ClassMap(
    [parse_class_mapping("mobile=127.0.1.0/24"), parse_class_mapping("fixed=127.0.2.0/24")],
    default="mobile",
)


def scenario(name: str, *overrides: str) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.toml", overrides)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Fetch:
    """What a client saw: status (0: none), body bytes, seconds, the error if any, and
    when each body byte count arrived (for rates)."""

    status: int = 0
    body: int = 0
    seconds: float = 0.0
    error: BaseException | None = None
    samples: list[tuple[float, int]] = field(default_factory=list)


async def fetch(
    address: tuple[str, int],
    name: str,
    path: str,
    context: ssl.SSLContext,
    *,
    source: str = MOBILE,
    timeout: float = 20.0,
) -> Fetch:
    """``GET path`` over TLS with SNI ``name``, from ``source``, through ``address``."""
    result = Fetch()
    start = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                *address, ssl=context, server_hostname=name, local_addr=(source, 0)
            )
            host = name.rstrip(".")
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            result.status = int(head.split()[1])
            while chunk := await reader.read(65536):
                result.body += len(chunk)
                result.samples.append((time.perf_counter() - start, result.body))
    except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError) as error:
        result.error = error
    finally:
        result.seconds = time.perf_counter() - start
        if writer is not None:
            writer.transport.abort()
    return result


def rate_bps(samples: Sequence[tuple[float, int]], after_bytes: int) -> float:
    """Body rate from the first sample past ``after_bytes`` to the last one."""
    steady = [(t, n) for t, n in samples if n > after_bytes]
    (t0, n0), (t1, n1) = steady[0], steady[-1]
    return (n1 - n0) * 8 / (t1 - t0)
