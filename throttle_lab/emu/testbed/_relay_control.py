"""Talking to a running relay: control lines on a pipe or a Unix socket, and stopping it.

Commands, one a line: ``stats`` (the counters, JSON), ``reset`` (a fresh hook and zero
counters), ``path IFNAME DELAY_S LOSS`` (a client port's one-way delay and random loss,
for the next frames), ``stop``.

- :func:`serve_pipe`: commands on a pipe (the relay's stdin), answers as JSON lines on
  another (stdout), first ``{"type": "ready"}``; EOF is ``stop``. The fidelity testbed's
  relay child works this way.
- :func:`serve_socket`: one command per connection on a Unix socket, one JSON line back.
  The scenario testbed's daemon works this way, because the CLI that asks for
  ``testbed status`` is a different process every time.

Both stop on SIGTERM (and the socket server on SIGINT and SIGHUP) by raising out of the
loop, so the caller's ``finally`` always runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from typing import Any, TextIO

from throttle_lab.emu.testbed._hooks import HookFactory
from throttle_lab.emu.testbed._processes import die_with_parent, use_realtime_scheduling
from throttle_lab.emu.testbed._relay import Relay

__all__ = ["handle_command", "run_relay", "serve_pipe", "serve_socket"]

_CONTROL_READ_TIMEOUT_S = 1.0
_MAX_COMMAND_BYTES = 4096


class _Stop(Exception):
    """Raised by the signal handler to leave the relay's loop."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def handle_command(relay: Relay, line: str) -> tuple[dict[str, Any] | None, bool]:
    """(answer or None, stop?) for one control line."""
    words = line.split()
    if not words:
        return None, False
    if words == ["stop"]:
        return {"type": "stopping"}, True
    if words == ["stats"]:
        return relay.report(), False
    if words == ["reset"]:
        relay.reset()
        return {"type": "reset"}, False
    if words[0] == "path" and len(words) == 4:
        try:
            relay.set_path(words[1], float(words[2]), float(words[3]))
        except ValueError as exc:
            return {"type": "error", "message": str(exc)}, False
        return {"type": "path", "ifname": words[1]}, False
    return {"type": "error", "message": f"unknown command {line.strip()[:80]!r}"}, False


def serve_pipe(relay: Relay, control_fd: int, out: TextIO) -> None:
    """Relay until ``stop``, EOF on ``control_fd`` or SIGTERM; then report once more."""

    def emit(message: dict[str, Any]) -> None:
        out.write(json.dumps(message, sort_keys=True) + "\n")
        out.flush()

    pending = bytearray()

    def on_control() -> bool:
        chunk = os.read(control_fd, _MAX_COMMAND_BYTES)
        if not chunk:
            return True
        pending.extend(chunk)
        while b"\n" in pending:
            line, _, rest = bytes(pending).partition(b"\n")
            pending[:] = rest
            answer, stop = handle_command(relay, line.decode(errors="replace"))
            if stop:
                return True
            if answer is not None:
                emit(answer)
        return False

    signal.signal(signal.SIGTERM, _raise_stop)
    os.set_blocking(control_fd, False)
    emit({"type": "ready", "pid": os.getpid(), "realtime": relay.realtime})
    try:
        relay.run_until({control_fd: on_control})
    except _Stop:
        pass
    finally:
        with contextlib.suppress(OSError, ValueError):
            emit(relay.report())


def _answer_one(relay: Relay, listener: socket.socket) -> bool:
    """Serve one control connection; True when it said ``stop``."""
    try:
        conn, _ = listener.accept()
    except OSError:
        return False
    stop = False
    with conn:
        # A client that connects and says nothing holds the relay for at most this long.
        conn.settimeout(_CONTROL_READ_TIMEOUT_S)
        line = b""
        try:
            while b"\n" not in line and len(line) < _MAX_COMMAND_BYTES:
                chunk = conn.recv(_MAX_COMMAND_BYTES)
                if not chunk:
                    break
                line += chunk
            answer, stop = handle_command(relay, line.decode(errors="replace"))
            if answer is not None:
                conn.sendall(json.dumps(answer, sort_keys=True).encode() + b"\n")
        except OSError:
            return stop
    return stop


def serve_socket(relay: Relay, listener: socket.socket) -> None:
    """Relay until a ``stop`` on the Unix socket ``listener``, or SIGTERM/SIGINT/SIGHUP."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    listener.setblocking(False)
    with contextlib.suppress(_Stop):
        relay.run_until({listener.fileno(): lambda: _answer_one(relay, listener)})


def run_relay(
    client_ifname: str,
    server_ifname: str,
    *,
    one_way_delay_s: float,
    hook_factory: HookFactory,
    hook_kwargs: dict[str, Any],
) -> None:
    """Entry point of the relay process (see ``__main__``)."""
    die_with_parent()
    # Ctrl-C reaches the whole process group; the parent cleans up and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    relay = Relay(
        client_ifname,
        server_ifname,
        one_way_delay_s=one_way_delay_s,
        hook_factory=hook_factory,
        hook_kwargs=hook_kwargs,
    )
    relay.realtime = use_realtime_scheduling()
    relay.open()
    try:
        serve_pipe(relay, sys.stdin.fileno(), sys.stdout)
    finally:
        relay.close()
