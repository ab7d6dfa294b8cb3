"""The scenario testbed's daemon: build, serve, and always remove what was built.

Started detached by :func:`~throttle_lab.emu.testbed.lab_up` as ``python -m
throttle_lab.emu.testbed lab-daemon --state-dir DIR``. It stays in the root namespace
and reaches into the others: the relay's ``AF_PACKET`` sockets are made inside the
middlebox namespace by a thread that joined it (``socket_in_netns``), so one process
owns the namespaces (their names carry its pid), the origin child and the relay.

Order matters: the origin is started before the daemon asks for real-time scheduling
(children inherit it), and ``state.json`` is written last, when the relay answers on
its control socket: its existence means "ready". SIGTERM, SIGINT and SIGHUP at any
point lead to the same removal, in ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from throttle_lab.core import Distribution
from throttle_lab.emu.proxy import default_moment, default_network
from throttle_lab.emu.testbed._hooks import load_hook_factory
from throttle_lab.emu.testbed._lab import LabConfig
from throttle_lab.emu.testbed._lab_layout import (
    MB_SERVER_VETH,
    LabLayout,
    build_layout,
    plan_layout,
    remove_layout,
    set_access_link,
)
from throttle_lab.emu.testbed._netns import socket_in_netns
from throttle_lab.emu.testbed._processes import (
    JsonLineProcess,
    module_argv,
    use_realtime_scheduling,
)
from throttle_lab.emu.testbed._relay import ClientPort, Relay
from throttle_lab.emu.testbed._relay_control import serve_socket
from throttle_lab.scenario import Scenario, load_scenario

__all__ = ["lab_hosts", "run_lab_daemon", "typical"]

_ORIGIN_TIMEOUT_S = 30.0
_DEVICE_HOOK = "throttle_lab.emu.testbed._device_hook:device_hook"


def typical(distribution: Distribution) -> float:
    """The median of a scenario distribution (from a fixed-seed sample: some have no
    closed form here), the value a single emulated subscriber takes."""
    return float(np.median(distribution.sample(np.random.default_rng(0), 10_001)))


def lab_hosts(scenario: Scenario, extra: tuple[str, ...] = ()) -> list[str]:
    """Host names the class namespaces resolve to the origin: the scenario's media hosts,
    the literal names of its rules (``twitter.com``, ``t.co``) and ``extra``."""
    names = {host for media in scenario.media for host in media.hosts}
    for policy in scenario.policies:
        for _, _, rules, _ in policy.epochs():
            names.update(str(rule) for rule in rules.rules if "*" not in str(rule))
    return sorted(names | set(extra))


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _control_listener(path: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True))
    temporary.replace(path)


class _Daemon:
    """One run of the daemon; ``run()`` builds, serves until stopped, removes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.config = LabConfig.from_json((directory / "config.json").read_text())
        self.scenario = load_scenario(self.config.scenario_path, list(self.config.overrides))
        classes = self.config.classes or tuple(self.scenario.classes)
        self.layout: LabLayout = plan_layout(os.getpid(), classes)
        self.origin: JsonLineProcess | None = None
        self.relay: Relay | None = None

    def _rtt(self, class_name: str) -> float:
        if self.config.rtt_s is not None:
            return self.config.rtt_s
        return typical(self.scenario.classes[class_name].rtt)

    def _hook(self, at_s: float, networks: dict[str, str]) -> tuple[str, dict[str, Any]]:
        if self.config.hook is not None:
            return self.config.hook.factory, dict(self.config.hook.kwargs)
        return _DEVICE_HOOK, {
            "scenario_path": self.config.scenario_path,
            "overrides": list(self.config.overrides),
            "class_prefixes": {slot.name: slot.prefix for slot in self.layout.classes},
            "networks": networks,
            "at_s": at_s,
        }

    def run(self) -> None:
        config, layout = self.config, self.layout
        at_s = default_moment(self.scenario) if config.at_s is None else config.at_s
        networks = {
            slot.name: config.networks.get(slot.name) or default_network(self.scenario, slot.name)
            for slot in layout.classes
        }
        rtts = {slot.name: self._rtt(slot.name) for slot in layout.classes}
        build_layout(layout, lab_hosts(self.scenario, config.extra_hosts))
        access: dict[str, dict[str, float] | None] = {}
        for slot in layout.classes:
            access[slot.name] = None
            if config.access_rates:
                device_class = self.scenario.classes[slot.name]
                down, up = typical(device_class.down), typical(device_class.up)
                set_access_link(layout, slot.name, down_bps=down, up_bps=up, rtt_s=rtts[slot.name])
                access[slot.name] = {"down_bps": down, "up_bps": up}
        ca_path = self.directory / "ca.pem"
        origin_argv = ["origin", "--host", layout.server_address, "--ca-out", str(ca_path)]
        origin_argv += ["--scenario", config.scenario_path]
        for override in config.overrides:
            origin_argv += ["--set", override]
        self.origin = JsonLineProcess(layout.server_netns, module_argv(*origin_argv), name="origin")
        self.origin.wait_for("ready", timeout_s=_ORIGIN_TIMEOUT_S)
        factory, kwargs = self._hook(at_s, networks)
        middlebox = layout.middlebox_netns
        self.relay = Relay(
            [ClientPort(slot.relay_ifname, rtts[slot.name] / 2) for slot in layout.classes],
            MB_SERVER_VETH,
            hook_factory=load_hook_factory(factory),
            hook_kwargs=kwargs,
            socket_factory=lambda: socket_in_netns(middlebox, socket.AF_PACKET, socket.SOCK_RAW, 0),
            seed=config.seed,
        )
        self.relay.open()
        control_path = self.directory / "control.sock"
        with _control_listener(control_path) as listener:
            self.relay.realtime = use_realtime_scheduling()
            state = {
                "name": config.name,
                "pid": os.getpid(),
                "started": time.time(),
                "directory": str(self.directory),
                "scenario": self.scenario.name,
                "scenario_path": config.scenario_path,
                "overrides": list(config.overrides),
                "at_s": at_s,
                "at": self.scenario.datetime_at(at_s).isoformat(),
                "networks": networks,
                "rtt_s": rtts,
                "access": access,
                "hook": factory,
                "layout": layout.as_dict(),
                "ca_path": str(ca_path),
                "control_socket": str(control_path),
                "realtime": self.relay.realtime,
            }
            _write_atomically(self.directory / "state.json", state)
            print(json.dumps({"type": "ready", "pid": os.getpid()}), flush=True)
            serve_socket(self.relay, listener)

    def close(self, *, keep_log: bool) -> None:
        """Remove everything; the log stays only when the start failed (``up`` shows it)."""
        if self.relay is not None:
            with contextlib.suppress(Exception):
                print(json.dumps({"type": "final", **self.relay.report()}), flush=True)
            self.relay.close()
        if self.origin is not None:
            self.origin.kill()
        try:
            remove_layout(self.layout)
        finally:
            if keep_log:
                for entry in self.directory.iterdir():
                    if entry.name != "daemon.log":
                        with contextlib.suppress(OSError):
                            entry.unlink()
            else:
                shutil.rmtree(self.directory, ignore_errors=True)


def run_lab_daemon(directory: Path) -> int:
    """Entry point of the daemon process; the exit status says whether it came up."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _raise_exit)
    daemon: _Daemon | None = None
    ready = False
    try:
        daemon = _Daemon(directory)
        daemon.run()
        ready = True
    except SystemExit:
        ready = (directory / "state.json").exists()
    except Exception as exc:  # reported in the log, which `testbed up` shows
        print(f"testbed daemon failed: {exc}", file=sys.stderr, flush=True)
    finally:
        if daemon is not None:
            daemon.close(keep_log=not ready)
    return 0 if ready else 1
