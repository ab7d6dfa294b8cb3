"""Network namespaces, veths and qdiscs for the kernel testbed, and their removal.

Why plain ``ip``/``tc`` subprocess calls and not pyroute2: a testbed is built once per
run from about fifteen commands, so speed does not matter, while exactness does. The
iproute2 tools are the reference for what the kernel is told (their syntax is the one in
the man pages and in every report of a bug), they are on every Linux box that has
namespaces at all, and their error text goes straight into :class:`TestbedError`.
pyroute2 would add a dependency whose namespace API changed between 0.7 and 0.9 and
which forks helper processes per namespace anyway. The one thing the tools here lack is
``ethtool``; instead of a second binary, :func:`disable_offloads` issues the few legacy
``SIOCETHTOOL`` ioctls itself from a socket opened inside the namespace
(:func:`socket_in_netns`: a short-lived thread ``setns()``s, makes the socket and exits;
a socket keeps the namespace it was made in).

Names: every namespace this package makes is ``tl-<pid>-<n>-<role>``, where ``pid`` is
the process that owns it (the one that made it, or the scenario testbed's daemon) and
``role`` is ``cli``, ``cli<k>`` (the client namespace of the k-th device class), ``mb``
or ``srv``. :func:`cleanup_stale` removes those whose process is gone. Per-namespace
files that ``ip netns exec`` mounts over ``/etc`` (``/etc/netns/<name>/hosts``) go with
their namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from throttle_lab.errors import TestbedError

__all__ = [
    "NETNS_ETC_DIR",
    "NETNS_PREFIX",
    "cleanup_stale",
    "delete_netns",
    "disable_offloads",
    "list_netns",
    "netns_exec_argv",
    "netns_pids",
    "offload_state",
    "parse_netns_name",
    "run_command",
    "socket_in_netns",
]

NETNS_PREFIX = "tl-"
_NETNS_NAME = re.compile(r"^tl-(?P<pid>\d+)-(?P<index>\d+)-(?P<role>cli\d*|mb|srv)$")
_NETNS_DIR = "/run/netns"
NETNS_ETC_DIR = Path("/etc/netns")
_CLONE_NEWNET = 0x40000000
_COMMAND_TIMEOUT_S = 20.0

T = TypeVar("T")


def run_command(argv: Sequence[str], *, check: bool = True) -> str:
    """Run ``argv``; return its stdout. A failure becomes one :class:`TestbedError` line."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise TestbedError(f"{argv[0]} is not installed (the testbed needs iproute2)") from exc
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"{' '.join(argv)} did not finish in {_COMMAND_TIMEOUT_S:g} s") from exc
    if check and done.returncode != 0:
        detail = done.stderr.strip().splitlines()
        raise TestbedError(f"{' '.join(argv)} failed: {detail[-1] if detail else done.returncode}")
    return done.stdout


def netns_exec_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``netns`` (``ip netns exec`` execs it: no extra process)."""
    return ["ip", "netns", "exec", netns, *argv]


def parse_netns_name(name: str) -> tuple[int, int, str] | None:
    """``'tl-123-4-mb'`` -> ``(123, 4, 'mb')``; ``None`` for a name this package never makes."""
    match = _NETNS_NAME.match(name)
    if match is None:
        return None
    return int(match["pid"]), int(match["index"]), match["role"]


def list_netns() -> list[str]:
    """Names of all named network namespaces (the files in /run/netns)."""
    try:
        return sorted(os.listdir(_NETNS_DIR))
    except FileNotFoundError:
        return []


def netns_pids(netns: str) -> list[int]:
    """Processes that live in ``netns`` (they keep it alive after ``ip netns delete``)."""
    out = run_command(["ip", "netns", "pids", netns], check=False)
    return [int(word) for word in out.split() if word.isdigit()]


def delete_netns(netns: str) -> None:
    """Kill what runs in ``netns``, then delete it; deleting a namespace deletes its veths.

    Idempotent: a namespace that is already gone is not an error.
    """
    _remove_etc(netns)
    if netns not in list_netns():
        return
    for pid in netns_pids(netns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run_command(["ip", "netns", "delete", netns], check=False)
    if netns in list_netns():
        raise TestbedError(f"could not delete network namespace {netns}")


def _remove_etc(netns: str) -> None:
    """``/etc/netns/<netns>``, where ``ip netns exec`` finds the namespace's own files."""
    if parse_netns_name(netns) is not None:  # never anything this package did not make
        shutil.rmtree(NETNS_ETC_DIR / netns, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) STATE ...": the state follows the last parenthesis.
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def cleanup_stale() -> list[str]:
    """Remove the namespaces (and so the veths and processes) of runs that have died.

    A namespace counts as stale when its name has this package's form and the process
    named in it no longer exists. Returns the names removed.
    """
    removed = []
    for name in list_netns():
        parsed = parse_netns_name(name)
        if parsed is None or _pid_alive(parsed[0]):
            continue
        delete_netns(name)
        removed.append(name)
    # Files of namespaces that are gone already (a crash between the two removals).
    leftovers = sorted(NETNS_ETC_DIR.glob("tl-*")) if NETNS_ETC_DIR.is_dir() else []
    for directory in leftovers:
        parsed = parse_netns_name(directory.name)
        if parsed is not None and not _pid_alive(parsed[0]):
            _remove_etc(directory.name)
    return removed


_libc = ctypes.CDLL(None, use_errno=True)


def _call_in_netns(netns: str, function: Callable[[], T]) -> T:
    """Run ``function`` on a fresh thread that has joined ``netns`` and return its result.

    ``setns(CLONE_NEWNET)`` moves only the calling thread, and that thread ends right
    after, so the rest of the process never changes namespace.
    """
    results: list[T] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(os.path.join(_NETNS_DIR, netns), os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns into {netns}: {os.strerror(errno)}")
            finally:
                os.close(fd)
            results.append(function())
        except BaseException as exc:  # handed to the caller's thread below
            errors.append(exc)

    thread = threading.Thread(target=body, name=f"setns-{netns}")
    thread.start()
    thread.join()
    if errors:
        raise TestbedError(f"in namespace {netns}: {errors[0]}") from errors[0]
    return results[0]


def socket_in_netns(netns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket that lives in ``netns`` although this thread does not."""
    return _call_in_netns(netns, lambda: socket.socket(family, kind, proto))


# Legacy ethtool commands (linux/ethtool.h). Each takes struct ethtool_value {u32 cmd, data}.
_SIOCETHTOOL = 0x8946
_ETHTOOL_SET_COMMANDS = {
    "rx-checksum": 0x15,
    "tx-checksum": 0x17,
    "scatter-gather": 0x19,
    "tso": 0x1F,
    "gso": 0x24,
    "gro": 0x2C,
}
_ETHTOOL_GET_COMMANDS = {
    "rx-checksum": 0x14,
    "tx-checksum": 0x16,
    "scatter-gather": 0x18,
    "tso": 0x1E,
    "gso": 0x23,
    "gro": 0x2B,
}
_ETHTOOL_GFLAGS = 0x25
_ETHTOOL_SFLAGS = 0x26
_ETH_FLAG_LRO = 1 << 15


def _ethtool_value(sock: socket.socket, ifname: str, command: int, data: int = 0) -> int:
    value = ctypes.create_string_buffer(struct.pack("II", command, data), 8)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)).ljust(40, b"\0")
    fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, ifreq)
    return int(struct.unpack("II", value.raw)[1])


def offload_state(netns: str, ifname: str) -> dict[str, bool]:
    """Which offloads are on for ``ifname`` in ``netns`` (for checks and tests)."""
    with socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM) as sock:
        state = {
            name: bool(_ethtool_value(sock, ifname, command))
            for name, command in _ETHTOOL_GET_COMMANDS.items()
        }
        state["lro"] = bool(_ethtool_value(sock, ifname, _ETHTOOL_GFLAGS) & _ETH_FLAG_LRO)
    return state


def disable_offloads(netns: str, ifname: str) -> None:
    """Turn off segmentation, aggregation and checksum offloads so frames are MTU-sized.

    With TSO/GSO on, TCP hands a veth 64 KB super-segments and the relay would see
    (and police) those; with tx checksum offload on, the frames the relay reads carry
    unfinished checksums. The state is read back: a driver may refuse silently.
    """
    with socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for command in _ETHTOOL_SET_COMMANDS.values():
            _ethtool_value(sock, ifname, command, 0)
        flags = _ethtool_value(sock, ifname, _ETHTOOL_GFLAGS)
        if flags & _ETH_FLAG_LRO:
            _ethtool_value(sock, ifname, _ETHTOOL_SFLAGS, flags & ~_ETH_FLAG_LRO)
    still_on = [name for name, on in offload_state(netns, ifname).items() if on]
    if still_on:
        raise TestbedError(f"{netns}/{ifname}: could not turn off {', '.join(still_on)}")
