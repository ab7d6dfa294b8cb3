"""The scenario testbed that outlives the command that made it: up, use, status, down.

``throttle-lab testbed up SCENARIO`` (or :func:`lab_up`) starts a *daemon*, a detached
process that builds the namespaces (``_lab_layout``), starts the origin in the server
namespace, runs the relay with the scenario's device (``DeviceHook``) and answers on a
Unix socket; then the command returns. Later commands find it through its state
directory, ``/run/throttle-lab/<name>/`` (a tmpfs: a reboot clears it, as it clears the
namespaces)::

    config.json     what was asked (written by ``up`` before the daemon starts)
    state.json      what was built, written by the daemon once it is ready
    control.sock    the relay's control socket (stats, reset, path, stop)
    ca.pem          the origin's CA, for clients
    daemon.pid      the daemon's pid, until state.json has it
    daemon.log      the daemon's stdout and stderr

Why one daemon that owns everything rather than a relay child per namespace: the
namespace names carry the owner's pid (``tl-<pid>-0-<role>``), so when the daemon dies,
however it dies, :func:`~throttle_lab.emu.testbed.cleanup_stale` can tell that its
namespaces are orphans; the origin dies with it (``PR_SET_PDEATHSIG``); and anything
``testbed exec`` started inside a namespace is killed when the namespace is deleted.
:func:`lab_down` stops the daemon (SIGTERM, which makes it remove everything itself,
then SIGKILL if it must) and removes whatever is left, so it also cleans up after a
crash: no namespaces, veths, qdiscs, processes, hosts files or state remain.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from throttle_lab.emu.testbed._lab_layout import LabLayout, remove_layout, set_access_link
from throttle_lab.emu.testbed._netns import (
    cleanup_stale,
    list_netns,
    netns_exec_argv,
    socket_in_netns,
)
from throttle_lab.emu.testbed._processes import module_argv
from throttle_lab.emu.testbed._testbed import HookSpec
from throttle_lab.errors import TestbedError

__all__ = ["STATE_ROOT", "Lab", "LabConfig", "lab_down", "lab_names", "lab_up", "open_lab"]

STATE_ROOT = Path("/run/throttle-lab")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_UP_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 15.0
_DAEMON_MARK = b"lab-daemon"
_children: dict[int, subprocess.Popen[bytes]] = {}  # daemons this process started


@dataclass(frozen=True)
class LabConfig:
    """What ``testbed up`` builds. Times in seconds, rates in bit/s.

    ``classes``: the device classes to give a namespace (default: all the scenario's).
    ``rtt_s``: one round-trip time for every class (default: each class's median RTT).
    ``at_s``: the emulated moment, seconds since the scenario start (default: when a
    policy first covers a class). ``networks``: a class's scenario network (default:
    one the policies cover). ``access_rates``: shape each class's link to its median
    down/up rate (default: no limit but the relay's). ``hook``: another hook instead of
    the scenario's device (the fidelity benchmark's reference policer).
    """

    scenario_path: str
    overrides: tuple[str, ...] = ()
    name: str = "default"
    classes: tuple[str, ...] = ()
    rtt_s: float | None = None
    at_s: float | None = None
    networks: Mapping[str, str] = field(default_factory=dict)
    access_rates: bool = False
    hook: HookSpec | None = None
    extra_hosts: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise TestbedError(f"testbed name {self.name!r}: use letters, digits, '-', '_', '.'")
        if self.rtt_s is not None and not self.rtt_s >= 0:
            raise TestbedError(f"rtt must be >= 0 s, got {self.rtt_s!r}")

    def to_json(self) -> str:
        data = asdict(self)
        data["scenario_path"] = str(Path(self.scenario_path).resolve())
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> LabConfig:
        data = json.loads(text)
        hook = data.pop("hook")
        for key in ("overrides", "classes", "extra_hosts"):
            data[key] = tuple(data[key])
        return cls(**data, hook=None if hook is None else HookSpec(**hook))


def state_dir(name: str) -> Path:
    return STATE_ROOT / name


def daemon_running(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) testbed daemon, not a recycled pid."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rpartition(b")")[2].split()[:1] != [b"Z"] and _DAEMON_MARK in cmdline


class Lab:
    """A running scenario testbed, found by name (see the module docstring)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.name: str = state["name"]
        self.pid: int = state["pid"]
        self.layout = LabLayout.from_dict(state["layout"])
        self.directory = Path(state["directory"])
        self.ca_path = Path(state["ca_path"])
        self.control_path = Path(state["control_socket"])
        self.rtt_s: dict[str, float] = dict(state["rtt_s"])

    @classmethod
    def attach(cls, name: str = "default") -> Lab:
        """The testbed called ``name``; :class:`TestbedError` when it is not up."""
        path = state_dir(name) / "state.json"
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            raise TestbedError(f"no testbed {name!r} is up (throttle-lab testbed up)") from None
        lab = cls(state)
        if not lab.alive():
            raise TestbedError(
                f"testbed {name!r} is not running (its daemon died): throttle-lab testbed down"
            )
        return lab

    @property
    def class_names(self) -> list[str]:
        return [slot.name for slot in self.layout.classes]

    def alive(self) -> bool:
        return daemon_running(self.pid)

    # -- the relay -------------------------------------------------------------------
    def command(self, line: str, *, timeout_s: float = 10.0) -> dict[str, Any]:
        """One control command to the relay, its JSON answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            try:
                sock.connect(str(self.control_path))
                sock.sendall(line.encode() + b"\n")
                answer = b""
                while not answer.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            except OSError as exc:
                raise TestbedError(f"testbed {self.name!r} does not answer: {exc}") from exc
        try:
            message: dict[str, Any] = json.loads(answer)
        except json.JSONDecodeError:
            raise TestbedError(f"testbed {self.name!r} answered {answer[:80]!r}") from None
        if message.get("type") == "error":
            raise TestbedError(f"testbed {self.name!r}: {message.get('message')}")
        return message

    def stats(self) -> dict[str, Any]:
        return self.command("stats")

    def reset(self) -> None:
        """A fresh device (no flows, full buckets) and zero counters."""
        self.command("reset")

    def set_path(self, class_name: str, *, rtt_s: float, loss: float = 0.0) -> None:
        """A class's round-trip time and random loss (each way), for the next frames."""
        slot = self.layout.slot(class_name)
        self.command(f"path {slot.relay_ifname} {rtt_s / 2!r} {loss!r}")
        self.rtt_s[class_name] = rtt_s

    def set_access_link(
        self, class_name: str, *, down_bps: float | None, up_bps: float | None
    ) -> None:
        """Shape a class's access link (``None``: no limit that way)."""
        set_access_link(
            self.layout,
            class_name,
            down_bps=down_bps,
            up_bps=up_bps,
            rtt_s=self.rtt_s[class_name],
        )

    # -- clients ---------------------------------------------------------------------
    def client_socket(
        self, class_name: str, kind: socket.SocketKind = socket.SOCK_STREAM
    ) -> socket.socket:
        """A socket in a class's namespace: its connections come from that class."""
        return socket_in_netns(self.layout.slot(class_name).netns, socket.AF_INET, kind)

    def server_socket(self, kind: socket.SocketKind = socket.SOCK_STREAM) -> socket.socket:
        """A socket in the server namespace (a test's own server next to the origin)."""
        return socket_in_netns(self.layout.server_netns, socket.AF_INET, kind)

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context that trusts the origin's CA (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def exec_argv(self, class_name: str, argv: Sequence[str]) -> list[str]:
        return netns_exec_argv(self.layout.slot(class_name).netns, argv)

    def exec_env(self, class_name: str) -> dict[str, str]:
        """The environment for a command run as a client: it trusts the origin's CA."""
        ca = str(self.ca_path)
        return {
            **os.environ,
            "SSL_CERT_FILE": ca,
            "CURL_CA_BUNDLE": ca,
            "REQUESTS_CA_BUNDLE": ca,
            "THROTTLE_LAB_CLASS": class_name,
            "THROTTLE_LAB_ORIGIN": self.layout.server_address,
        }

    def kill_daemon(self) -> None:
        """SIGKILL the daemon, as a crash would (for tests of the cleanup)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        child = _children.get(self.pid)
        if child is not None:
            child.wait(timeout=10)

    def down(self) -> list[str]:
        return lab_down(self.name)


def lab_names() -> list[str]:
    """Names of the testbeds with a state directory (running or left by a crash)."""
    if not STATE_ROOT.is_dir():
        return []
    return sorted(entry.name for entry in STATE_ROOT.iterdir() if entry.is_dir())


def _log_tail(directory: Path) -> str:
    try:
        lines = (directory / "daemon.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "no log"


def lab_up(config: LabConfig, *, timeout_s: float = _UP_TIMEOUT_S) -> Lab:
    """Start a testbed's daemon and wait until it is ready (see the module docstring)."""
    if os.geteuid() != 0:
        raise TestbedError("the kernel testbed needs root (network namespaces, AF_PACKET)")
    directory = state_dir(config.name)
    if (directory / "state.json").exists() or (directory / "config.json").exists():
        previous = _read_pid(directory)
        if previous is not None and daemon_running(previous):
            raise TestbedError(
                f"testbed {config.name!r} is already up (throttle-lab testbed down"
                f"{'' if config.name == 'default' else ' --name ' + config.name} first)"
            )
        lab_down(config.name)  # what a crash left
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(config.to_json())
    with open(directory / "daemon.log", "wb") as log:
        daemon = subprocess.Popen(
            module_argv("lab-daemon", "--state-dir", str(directory)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not in the terminal's process group: Ctrl-C spares it
        )
    _children[daemon.pid] = daemon
    (directory / "daemon.pid").write_text(str(daemon.pid))
    deadline = time.monotonic() + timeout_s
    while not (directory / "state.json").exists():
        if daemon.poll() is not None:
            reason = _log_tail(directory)
            shutil.rmtree(directory, ignore_errors=True)
            raise TestbedError(f"testbed {config.name!r} did not come up: {reason}")
        if time.monotonic() > deadline:
            lab_down(config.name)
            raise TestbedError(f"testbed {config.name!r} not ready within {timeout_s:g} s")
        time.sleep(0.05)
    return Lab.attach(config.name)


def _read_pid(directory: Path) -> int | None:
    for name in ("state.json", "daemon.pid"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            text = (directory / name).read_text()
            return int(json.loads(text)["pid"]) if name.endswith(".json") else int(text)
    return None


def _stop_daemon(pid: int) -> None:
    """SIGTERM (the daemon removes what it built), then SIGKILL after a grace period."""
    for signum, grace_s in ((signal.SIGTERM, _STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        deadline = time.monotonic() + grace_s
        while daemon_running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = _children.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)  # reap it, or it stays a zombie "alive"
        if not daemon_running(pid):
            return


def lab_down(name: str = "default") -> list[str]:
    """Stop testbed ``name`` and remove all it made, and whatever dead runs left.

    Works after a crash too: from the state file when there is one, and from the
    namespace names (the owner's pid) otherwise. Returns the namespaces removed.
    """
    directory = state_dir(name)
    layout: LabLayout | None = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        layout = LabLayout.from_dict(json.loads((directory / "state.json").read_text())["layout"])
    # Counted before the daemon removes them itself, so that the answer says what went.
    removed = set(layout.namespaces) & set(list_netns()) if layout is not None else set()
    pid = _read_pid(directory)
    if pid is not None and daemon_running(pid):
        _stop_daemon(pid)
    if layout is not None:
        removed.update(remove_layout(layout))
    removed.update(cleanup_stale())
    shutil.rmtree(directory, ignore_errors=True)
    return sorted(removed)


@contextlib.contextmanager
def open_lab(config: LabConfig) -> Iterator[Lab]:
    """A testbed for the ``with`` body, removed afterwards whatever happens."""
    lab = lab_up(config)
    try:
        yield lab
    finally:
        lab_down(config.name)
