"""The raw TLS client behind the SNI swap and the split ClientHello, against an origin that
throttles by the name it finds in the first read of a connection (no reassembly)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import numpy as np
import pytest

from tests.probe.conftest import loopback_settings
from throttle_lab.probe import Behaviour, LoadLabel, LoopbackOrigin, fetch_raw, make_ssl_context
from throttle_lab.records import LoadRecord

LABEL = LoadLabel("t", "sni_name", 1)


async def raw(
    origin: LoopbackOrigin,
    cafile: Path,
    sni: str | None,
    *,
    split: bool = False,
    path: str = "/x",
    port: int | None = None,
) -> LoadRecord:
    settings = loopback_settings(port or origin.port, cafile, timeout_s=5.0)
    return await fetch_raw(
        f"https://pbs.twimg.com:{port or origin.port}{path}",
        LABEL,
        address="127.0.0.1",
        sni=sni,
        split=split,
        settings=settings,
        context=make_ssl_context(None, verify=False),
        run_started=0.0,
        rng=np.random.default_rng(0),
    )


async def test_only_the_name_in_the_hello_changes(
    server_context: ssl.SSLContext, cafile: Path
) -> None:
    routes = {"/x": Behaviour(size_bytes=40_000)}
    async with LoopbackOrigin(
        server_context, routes, throttled_names={"*.twimg.com"}, throttle_rate_bps=640e3
    ) as origin:
        named = await raw(origin, cafile, "pbs.twimg.com")
        unrelated = await raw(origin, cafile, "example.org")
        nameless = await raw(origin, cafile, None)
        seen = [(c.sni, c.path, c.throttled) for c in origin.connections]
    assert seen == [
        ("pbs.twimg.com", "/x", True),
        ("example.org", "/x", False),
        (None, "/x", False),
    ]
    for record in (named, unrelated, nameless):
        assert record.outcome == "ok" and record.bytes_received == 40_000
        assert record.extra["http_status"] == 200
    assert (named.host, unrelated.host, nameless.host) == ("pbs.twimg.com", "example.org", "")
    assert named.total_s >= 40_000 * 8 / 640e3  # 0.5 s at the throttled rate
    assert unrelated.total_s < named.total_s / 3 and nameless.total_s < named.total_s / 3


async def test_a_split_hello_hides_the_name_from_single_segment_inspection(
    server_context: ssl.SSLContext, cafile: Path
) -> None:
    async with LoopbackOrigin(
        server_context, {"/x": Behaviour(size_bytes=20_000)}, throttled_names={"pbs.twimg.com"}
    ) as origin:
        whole = await raw(origin, cafile, "pbs.twimg.com")
        split = await raw(origin, cafile, "pbs.twimg.com", split=True)
        first_reads = [(c.first_read_kind, c.sni, c.throttled) for c in origin.connections]
    # The server still gets the whole name (TLS works); the first read no longer holds it.
    assert first_reads == [
        ("client_hello", "pbs.twimg.com", True),
        ("truncated", "pbs.twimg.com", False),
    ]
    assert len(split.extra["first_flight_segments"]) == 2
    assert sum(split.extra["first_flight_segments"]) == whole.extra["first_flight_segments"][0]
    assert split.outcome == whole.outcome == "ok"


@pytest.mark.parametrize(
    ("behaviour", "handshake_failure", "outcome"),
    [
        (Behaviour(failure="reset_mid_body", size_bytes=400_000, rate_bps=8e6), None, "reset"),
        (Behaviour(), "reset", "reset"),
        (Behaviour(status=403), None, "http_error"),
        (Behaviour(failure="stall_body", size_bytes=100_000, rate_bps=1e6), None, "timeout"),
    ],
)
async def test_raw_failures_are_outcomes(
    server_context: ssl.SSLContext,
    cafile: Path,
    behaviour: Behaviour,
    handshake_failure: str | None,
    outcome: str,
) -> None:
    async with LoopbackOrigin(
        server_context, {"/x": behaviour}, handshake_failure=handshake_failure
    ) as origin:
        settings = loopback_settings(origin.port, cafile, timeout_s=0.5)
        record = await fetch_raw(
            origin.url("/x", "pbs.twimg.com"),
            LABEL,
            address="127.0.0.1",
            sni="pbs.twimg.com",
            settings=settings,
            context=make_ssl_context(None, verify=False),
            run_started=0.0,
            rng=np.random.default_rng(0),
        )
    assert record.outcome == outcome, record.extra.get("error")
    if outcome == "timeout":
        assert record.bytes_received > 0  # stalled mid-body: progress was made


async def test_raw_connect_error(cafile: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        settings = loopback_settings(port, cafile)
        record = await fetch_raw(
            f"https://pbs.twimg.com:{port}/x",
            LABEL,
            address="127.0.0.1",
            sni=None,
            settings=settings,
            context=make_ssl_context(None, verify=False),
            run_started=0.0,
            rng=np.random.default_rng(0),
        )
    assert record.outcome == "connect_error"
