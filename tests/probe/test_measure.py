"""The aiohttp measurement against a real HTTPS origin on loopback: each phase's time
lands in the right column, and every failure is a classified record, never an exception.

Timing assertions are bounds around delays the origin imposes (the phase took at least
the delay, and not much more), so a delay attributed to the wrong phase fails them; none
depends on how fast this machine is beyond a generous 150 ms of slack.
"""

from __future__ import annotations

import math
import socket
import ssl
from pathlib import Path

import numpy as np
import pytest
import trustme

from tests.probe.conftest import loopback_settings
from throttle_lab.probe import Behaviour, Fetcher, LoadLabel, LoopbackOrigin
from throttle_lab.probe._stats import plateau_rate, usable
from throttle_lab.records import LoadRecord, Outcome

SLACK_S = 0.15
LABEL = LoadLabel("t", "target", 1, kind="photo", expected_size=5000)


async def fetch(origin: LoopbackOrigin, path: str, cafile: Path, **settings: object) -> LoadRecord:
    fetcher = Fetcher(loopback_settings(origin.port, cafile, **settings))
    return await fetcher.fetch(
        origin.url(path, "pbs.twimg.com"), LABEL, rng=np.random.default_rng(1)
    )


async def test_each_phase_gets_its_own_delay(server_context: ssl.SSLContext, cafile: Path) -> None:
    body = Behaviour(size_bytes=150_000, ttfb_delay_s=0.25, rate_bps=800e3)  # body: 1.5 s
    async with LoopbackOrigin(server_context, {"/p": body}, handshake_delay_s=0.2) as origin:
        record = await fetch(origin, "/p", cafile)
    assert record.outcome == "ok" and record.bytes_received == 150_000
    assert record.source == "probed" and record.host == "pbs.twimg.com"
    assert 0 <= record.dns_s < 0.05  # --resolve: no lookup on the wire
    assert 0 < record.connect_s < 0.05  # loopback connect: the delays are elsewhere
    assert 0.2 <= record.tls_s < 0.2 + SLACK_S
    server_wait = record.ttfb_s - record.extra["request_sent_s"]
    assert 0.25 <= server_wait < 0.25 + SLACK_S
    body_s = record.total_s - record.ttfb_s
    assert 1.5 - 0.02 <= body_s < 1.5 + SLACK_S
    assert plateau_rate(record) == pytest.approx(800e3, rel=0.05)
    extra = record.extra
    assert extra["http_status"] == 200 and extra["http_version"] == "1.1"
    assert extra["reused"] is False and extra["tls_version"] == "TLSv1.3"
    # OONI-style samples: exponential gaps, cumulative and ending at the load's end.
    times = [t for t, _ in extra["samples"]]
    assert times == sorted(times) and times[-1] == pytest.approx(record.total_s, abs=1e-5)
    assert extra["samples"][-1][1] == 150_000
    assert len(extra["samples"]) > 3
    if extra.get("tcp_info") is not None:  # Linux
        assert extra["tcp_info"]["bytes_received"] >= 150_000


async def test_a_timeout_after_progress_is_slowness_not_failure(
    server_context: ssl.SSLContext, cafile: Path
) -> None:
    routes = {"/slow": Behaviour(size_bytes=1_000_000, rate_bps=400e3)}
    async with LoopbackOrigin(server_context, routes) as origin:
        record = await fetch(origin, "/slow", cafile, timeout_s=0.6)
    assert record.outcome == "timeout"
    assert 0 < record.bytes_received < 1_000_000
    assert usable(record)  # counts as evidence of slowness
    assert record.goodput_bps == pytest.approx(400e3, rel=0.35)
    assert record.extra["failure_phase"] == "body"


@pytest.mark.parametrize(
    ("behaviour", "handshake_failure", "outcome", "phase"),
    [
        (Behaviour(failure="stall_headers"), None, "timeout", "request"),
        (Behaviour(failure="reset_after_request"), None, "reset", "request"),
        (
            Behaviour(size_bytes=400_000, rate_bps=8e6, failure="reset_mid_body"),
            None,
            "reset",
            "body",
        ),
        (Behaviour(status=404), None, "http_error", "body"),
        (Behaviour(), "reset", "reset", "tls"),
        (Behaviour(), "close", "reset", "tls"),
    ],
)
async def test_failures_are_outcomes(
    server_context: ssl.SSLContext,
    cafile: Path,
    behaviour: Behaviour,
    handshake_failure: str | None,
    outcome: str,
    phase: str,
) -> None:
    async with LoopbackOrigin(
        server_context, {"/x": behaviour}, handshake_failure=handshake_failure
    ) as origin:
        record = await fetch(origin, "/x", cafile, timeout_s=0.5)
    assert record.outcome == outcome, record.extra.get("error")
    assert record.extra["failure_phase"] == phase
    assert record.size_bytes >= 0 and not math.isnan(record.total_s)


async def test_dns_error_without_touching_the_network(cafile: Path) -> None:
    fetcher = Fetcher(loopback_settings(1, cafile))  # system DNS off: no lookup leaves the host
    record = await fetcher.fetch("https://nowhere.test/x", LABEL, rng=np.random.default_rng(0))
    assert record.outcome == Outcome.DNS_ERROR.value
    assert record.size_bytes == 5000  # the expected size, for a load that never started
    assert record.bytes_received == 0 and math.isnan(record.ttfb_s)


async def test_connect_error_on_a_closed_port(cafile: Path) -> None:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]  # bound, never listening: refused
        record = await Fetcher(loopback_settings(port, cafile)).fetch(
            f"https://pbs.twimg.com:{port}/x", LABEL, rng=np.random.default_rng(0)
        )
    assert record.outcome == "connect_error"
    assert record.extra["failure_phase"] == "connect"


async def test_tls_error_when_the_certificate_is_not_trusted(
    server_context: ssl.SSLContext, tmp_path: Path
) -> None:
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    async with LoopbackOrigin(server_context, {"/x": Behaviour()}) as origin:
        record = await fetch(origin, "/x", stranger)
    assert record.outcome == "tls_error"
    assert record.extra["failure_phase"] == "tls"
    assert "certificate" in record.extra["error"].lower()
