"""The kernel testbed: real Linux TCP through a userspace middlebox in namespaces (root).

Three network namespaces per testbed (client, middlebox, server), joined by veths; the
middlebox bridges frames in userspace, delaying them by half the RTT each way and
showing each to a pluggable :class:`FrameHook` (a policer, or later the full SNI-aware
device), while ``tbf`` on its client-side veth provides the shaper case. See
``_testbed.py`` for the picture and ``benchmarks/fidelity.py`` for its main use.

    with open_testbed(TestbedConfig(rtt_s=0.1, hook=HookSpec.policer(128e3, 16_000))) as tb:
        result = tb.fetch(250_000, timeout_s=120)
"""

from throttle_lab.emu.testbed._hooks import (
    Direction,
    FrameHook,
    PassHook,
    PolicerHook,
    ReportingHook,
    ipv4_packet_length,
)
from throttle_lab.emu.testbed._netns import cleanup_stale, list_netns, offload_state
from throttle_lab.emu.testbed._relay import DirectionCounters, Relay
from throttle_lab.emu.testbed._results import TransferResult
from throttle_lab.emu.testbed._testbed import (
    HookSpec,
    ShaperSpec,
    Testbed,
    TestbedConfig,
    close_all,
    open_testbed,
)

__all__ = [
    "Direction",
    "DirectionCounters",
    "FrameHook",
    "HookSpec",
    "PassHook",
    "PolicerHook",
    "Relay",
    "ReportingHook",
    "ShaperSpec",
    "Testbed",
    "TestbedConfig",
    "TransferResult",
    "cleanup_stale",
    "close_all",
    "ipv4_packet_length",
    "list_netns",
    "offload_state",
    "open_testbed",
]
