"""The kernel testbed: real Linux TCP through a userspace middlebox in namespaces (root).

Two ways to use it:

- :func:`open_testbed`: three namespaces (client, middlebox, server) for one transfer
  tool, for the fidelity benchmark: the middlebox bridges frames in userspace, delaying
  them by half the RTT each way and showing each to a pluggable :class:`FrameHook` (a
  policer), while ``tbf`` provides the shaper case. See ``_testbed.py``.
- the *scenario testbed* (:func:`lab_up`, :func:`open_lab`, ``throttle-lab testbed``): a
  client namespace per device class, the built-in HTTPS origin in the server namespace,
  and the scenario's SNI-aware device (:class:`DeviceHook`, the same ``core.Device`` as
  the simulator) deciding per packet in the relay, run by a daemon that outlives the
  command that started it. See ``_lab.py`` and ``_lab_layout.py``.

    with open_testbed(TestbedConfig(rtt_s=0.1, hook=HookSpec.policer(128e3, 16_000))) as tb:
        result = tb.fetch(250_000, timeout_s=120)

    with open_lab(LabConfig("scenarios/russia-twitter-2021.toml")) as lab:
        load = https_load(lab.client_socket("mobile"), (lab.layout.server_address, 443),
                          sni="pbs.twimg.com", path="/bytes/100000",
                          context=lab.client_context(), timeout_s=60)

``DeviceHook`` and ``device_hook`` load on first use: they bring the scenario and proxy
modules, which the transfer tools started per fetch do not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from throttle_lab.emu.testbed._frames import TcpFrame, forge_rst, parse_tcp_frame
from throttle_lab.emu.testbed._hooks import (
    Direction,
    FrameHook,
    FrameVerdict,
    PassHook,
    PolicerHook,
    ReportingHook,
    VerdictHook,
    ipv4_packet_length,
)
from throttle_lab.emu.testbed._lab import (
    STATE_ROOT,
    Lab,
    LabConfig,
    lab_down,
    lab_names,
    lab_up,
    open_lab,
)
from throttle_lab.emu.testbed._lab_layout import ClassSlot, LabLayout
from throttle_lab.emu.testbed._netns import cleanup_stale, list_netns, offload_state
from throttle_lab.emu.testbed._relay import ClientPort, DirectionCounters, Relay
from throttle_lab.emu.testbed._results import TransferResult
from throttle_lab.emu.testbed._testbed import (
    HookSpec,
    ShaperSpec,
    Testbed,
    TestbedConfig,
    close_all,
    open_testbed,
)
from throttle_lab.emu.testbed._tlsload import HttpsLoad, client_hello, https_load

if TYPE_CHECKING:
    from throttle_lab.emu.testbed._device_hook import ClassCounters, DeviceHook, device_hook

_LAZY = {"ClassCounters", "DeviceHook", "device_hook"}

__all__ = [
    "STATE_ROOT",
    "ClassCounters",
    "ClassSlot",
    "ClientPort",
    "DeviceHook",
    "Direction",
    "DirectionCounters",
    "FrameHook",
    "FrameVerdict",
    "HookSpec",
    "HttpsLoad",
    "Lab",
    "LabConfig",
    "LabLayout",
    "PassHook",
    "PolicerHook",
    "Relay",
    "ReportingHook",
    "ShaperSpec",
    "TcpFrame",
    "Testbed",
    "TestbedConfig",
    "TransferResult",
    "VerdictHook",
    "cleanup_stale",
    "client_hello",
    "close_all",
    "device_hook",
    "forge_rst",
    "https_load",
    "ipv4_packet_length",
    "lab_down",
    "lab_names",
    "lab_up",
    "list_netns",
    "offload_state",
    "open_lab",
    "open_testbed",
    "parse_tcp_frame",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}._device_hook"), name)
