"""The built-in origin (``throttle_lab.emu.origin``) as a process in the server namespace.

HTTPS on 443 (any host name, certificates made on the fly by a private CA whose PEM
goes to ``ca_out`` for clients) and plain HTTP on 80, both with the origin's routes
(``/bytes/N``, ``/media/400KB``, ``/media/<scenario media name>``).

The listening sockets are made here rather than by ``Origin.start()`` for one reason:
the congestion control. Namespaces inherit the host's default (``bbr`` on this
machine), may only switch to one the host allows by sysctl, and the model and the
scenario assume ``cubic``; a socket option on the listener (root may pick any
congestion control the kernel has) is inherited by every accepted connection and
changes nothing outside. The origin's ``allow_remote`` is needed because its address
is not loopback; it lives in a namespace that only the testbed's clients can reach.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from throttle_lab.emu.origin import CertificateStore, Origin
from throttle_lab.emu.testbed._processes import die_with_parent
from throttle_lab.emu.testbed._transfer import set_congestion_control
from throttle_lab.scenario import load_scenario

__all__ = ["serve_origin"]

_BACKLOG = 1024


def _listener(host: str, port: int, congestion_control: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    set_congestion_control(sock, congestion_control)
    sock.bind((host, port))
    return sock


async def _serve(
    host: str,
    *,
    ca_out: Path,
    tls_port: int,
    plain_port: int,
    scenario_path: str | None,
    overrides: Sequence[str],
    congestion_control: str,
) -> None:
    certificates = CertificateStore()
    certificates.write_ca(ca_out)
    scenario = load_scenario(scenario_path, list(overrides)) if scenario_path else None
    runners = []
    for port, tls in ((tls_port, True), (plain_port, False)):
        origin = Origin(
            host=host,
            port=port,
            certificates=certificates,
            scenario=scenario,
            tls=tls,
            allow_remote=True,
        )
        runner = web.AppRunner(origin.app, access_log=None)
        await runner.setup()
        runners.append(runner)
        context = certificates.server_context() if tls else None
        sock = _listener(host, port, congestion_control)
        await web.SockSite(runner, sock, ssl_context=context, backlog=_BACKLOG).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ready = {"type": "ready", "tls_port": tls_port, "plain_port": plain_port, "ca": str(ca_out)}
    print(json.dumps(ready), flush=True)
    try:
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def serve_origin(
    host: str,
    *,
    ca_out: Path,
    tls_port: int = 443,
    plain_port: int = 80,
    scenario_path: str | None = None,
    overrides: Sequence[str] = (),
    congestion_control: str = "cubic",
) -> None:
    """Entry point of the origin process (``python -m throttle_lab.emu.testbed origin``)."""
    die_with_parent()
    asyncio.run(
        _serve(
            host,
            ca_out=ca_out,
            tls_port=tls_port,
            plain_port=plain_port,
            scenario_path=scenario_path,
            overrides=overrides,
            congestion_control=congestion_control,
        )
    )
