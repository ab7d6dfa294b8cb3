"""Child processes of the testbed: started in a namespace, spoken to by JSON lines; and
what such a process asks of the kernel for itself (to die with its parent, real-time
scheduling)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from throttle_lab.emu.testbed._netns import netns_exec_argv
from throttle_lab.errors import TestbedError

__all__ = ["JsonLineProcess", "die_with_parent", "module_argv", "use_realtime_scheduling"]

_PR_SET_PDEATHSIG = 1
_REALTIME_PRIORITY = 50


def module_argv(*args: str) -> list[str]:
    """``python -m throttle_lab.emu.testbed ARGS`` with this interpreter (and its venv)."""
    return [sys.executable, "-m", "throttle_lab.emu.testbed", *args]


class JsonLineProcess:
    """A child in a namespace that prints one JSON object a line; reads take a timeout.

    stdout is read with ``select`` and ``os.read`` on the raw pipe (no buffered reader,
    which could hold a line that ``select`` then no longer sees). stderr goes to a
    temporary file so that a chatty or dying child cannot block on a full pipe, and its
    last line explains a failure.
    """

    def __init__(self, netns: str, argv: Sequence[str], *, name: str) -> None:
        self.name = name
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by kill())
        self._pending = b""
        self.process = subprocess.Popen(
            netns_exec_argv(netns, argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            bufsize=0,
        )
        assert self.process.stdout is not None
        self._stdout_fd = self.process.stdout.fileno()

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr_tail(self) -> str:
        """The child's last line on stderr (or its exit status), for error messages."""
        try:
            self._stderr.seek(0)
            lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        except ValueError:  # already closed by kill()
            lines = []
        return lines[-1] if lines else f"exit status {self.process.poll()}"

    def read_message(self, *, timeout_s: float) -> dict[str, Any]:
        """The next JSON line; :class:`TestbedError` on timeout or when the child died."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TestbedError(f"{self.name}: no answer within {timeout_s:g} s")
            readable, _, _ = select.select([self._stdout_fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(self._stdout_fd, 65536)
            if not chunk:
                self.process.wait(timeout=5)
                raise TestbedError(f"{self.name} exited: {self.stderr_tail()}")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        try:
            message = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TestbedError(f"{self.name} printed {line[:80]!r}, not JSON") from exc
        if not isinstance(message, dict):
            raise TestbedError(f"{self.name} printed {line[:80]!r}, not a JSON object")
        return message

    def wait_for(self, kind: str, *, timeout_s: float) -> dict[str, Any]:
        """Skip messages until one of ``type == kind`` arrives."""
        deadline = time.monotonic() + timeout_s
        while True:
            message = self.read_message(timeout_s=max(0.0, deadline - time.monotonic()))
            if message.get("type") == kind:
                return message

    def send_line(self, line: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(line.encode() + b"\n")
        except (BrokenPipeError, ValueError) as exc:
            raise TestbedError(f"{self.name} is gone: {self.stderr_tail()}") from exc

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """Stop the child for good (idempotent) and release its pipes."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent goes (even by SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getppid()
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def use_realtime_scheduling() -> bool:
    """Ask for SCHED_FIFO so that a due frame preempts ordinary processes at once.

    On a shared 2-core machine an ordinary process wakes from ``select()`` a few hundred
    microseconds to milliseconds late when the CPUs are busy; a real-time one wakes in
    tens of microseconds. The relay blocks between frames, so it cannot hog a CPU, and
    the kernel's RT throttling caps it anyway. Returns whether it worked. Children forked
    afterwards inherit the policy: start them first.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(_REALTIME_PRIORITY))
    except (OSError, AttributeError):
        return False
    return True
