"""The kernel testbed: namespaces, the relay, the transfer tool and the cleanup.

Tests marked ``root`` build real namespaces and skip cleanly without root or without
namespace support. The rest check the pure parts (frame parsing, the policer hook,
TCP_INFO parsing, names) anywhere.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from throttle_lab.emu.testbed import (
    Direction,
    HookSpec,
    PolicerHook,
    ShaperSpec,
    TestbedConfig,
    cleanup_stale,
    ipv4_packet_length,
    list_netns,
    offload_state,
    open_testbed,
)
from throttle_lab.emu.testbed._netns import parse_netns_name
from throttle_lab.emu.testbed._transfer import parse_tcp_info

# -- pure parts ----------------------------------------------------------------------


def _ipv4_frame(ip_length: int) -> bytes:
    ethernet = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    ip_header = struct.pack("!BBH", 0x45, 0, ip_length) + b"\0" * 16
    return ethernet + ip_header + b"\0" * (ip_length - 20)


def test_ipv4_packet_length_reads_the_ip_header_not_the_frame() -> None:
    assert ipv4_packet_length(_ipv4_frame(1500)) == 1500
    arp = b"\xff" * 6 + b"\x04" * 6 + b"\x08\x06" + b"\0" * 28
    assert ipv4_packet_length(arp) is None
    assert ipv4_packet_length(b"\x00" * 5) is None


def test_policer_hook_polices_one_direction_by_ip_length() -> None:
    hook = PolicerHook(8_000.0, 3_000, now=0.0)  # 1000 bytes/s, two full packets of burst
    s2c, c2s = Direction.SERVER_TO_CLIENT, Direction.CLIENT_TO_SERVER
    full = _ipv4_frame(1500)  # a 1514-byte frame: a 3000-byte bucket holds two
    assert [hook.on_frame(s2c, full, now=0.0) for _ in range(3)] == [True, True, False]
    assert hook.on_frame(c2s, full, now=0.0)  # the other direction is not policed
    assert hook.on_frame(s2c, b"\xff" * 12 + b"\x08\x06" + b"\0" * 28, now=0.0)  # ARP passes
    assert hook.on_frame(s2c, full, now=1.5)  # 1.5 s refilled 1500 bytes
    assert hook.report()["dropped_packets"] == 1


def test_parse_tcp_info_reads_linux_offsets_and_tolerates_short_structs() -> None:
    raw = bytearray(232)
    struct.pack_into("I", raw, 16, 1448)
    struct.pack_into("I", raw, 100, 7)
    struct.pack_into("I", raw, 148, 20_500)
    info = parse_tcp_info(bytes(raw))
    assert (info["snd_mss"], info["total_retrans"], info["min_rtt_s"]) == (1448, 7, 0.0205)
    assert parse_tcp_info(bytes(raw[:104]))["min_rtt_s"] is None


def test_netns_names_carry_the_owner_pid() -> None:
    assert parse_netns_name("tl-123-4-mb") == (123, 4, "mb")
    assert parse_netns_name("tl-123-4-router") is None
    assert parse_netns_name("other") is None


# -- root: real namespaces -----------------------------------------------------------


@pytest.fixture(scope="module")
def namespaces() -> None:
    """Skip unless this process may make network namespaces."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("needs root on Linux")
    probe = f"tl-probe-{uuid.uuid4().hex[:8]}"
    try:
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    except FileNotFoundError:
        pytest.skip("iproute2 (ip) is not installed")
    if made.returncode != 0:
        pytest.skip(f"cannot make network namespaces: {made.stderr.decode().strip()}")
    subprocess.run(["ip", "netns", "delete", probe], check=False)


def _netns_inodes(names: tuple[str, ...]) -> set[int]:
    return {os.stat(f"/run/netns/{name}").st_ino for name in names}


def _processes_in(inodes: set[int]) -> list[int]:
    """Processes whose network namespace is one of ``inodes`` (a namespace is alive
    as long as one process is in it, even after its name is gone)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino in inodes:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _assert_removed(names: tuple[str, ...], inodes: set[int]) -> None:
    assert not set(names) & set(list_netns())
    assert _processes_in(inodes) == []


@pytest.mark.root
def test_testbed_comes_up_and_tcp_passes(namespaces: None) -> None:
    with open_testbed(TestbedConfig(rtt_s=0.01)) as testbed:
        for netns, ifname in (
            (testbed.client_netns, "tl-c"),
            (testbed.middlebox_netns, "tl-mc"),
            (testbed.middlebox_netns, "tl-ms"),
            (testbed.server_netns, "tl-s"),
        ):
            assert not any(offload_state(netns, ifname).values()), (netns, ifname)
        result = testbed.fetch(200_000, timeout_s=20)
    assert result.outcome == "ok"
    assert result.received_bytes == 200_000
    assert result.server["congestion_control"] == "cubic"
    assert result.server["snd_mss"] == 1448  # MTU 1500 with TCP timestamps
    assert result.relay_dropped_frames == 0
    assert result.kernel_drops == 0
    assert result.relay["s2c"]["largest_frame_bytes"] == 1514  # MTU-sized, no GSO
    assert result.relay["c2s"]["largest_frame_bytes"] <= 1514
    assert 0 < result.ttfb_s < result.total_s  # type: ignore[operator]


@pytest.mark.root
@pytest.mark.parametrize("rtt_s", [0.02, 0.1])
def test_rtt_through_the_relay_is_the_configured_one(namespaces: None, rtt_s: float) -> None:
    with open_testbed(TestbedConfig(rtt_s=rtt_s)) as testbed:
        testbed.ping_rtts(1)  # ARP first: its own round trip is not what we measure
        rtts = testbed.ping_rtts(10, interval_s=0.02)
        stats = testbed.relay_stats()
    assert len(rtts) == 10
    assert rtt_s <= min(rtts)  # the relay never lets a frame go early
    assert abs(statistics.median(rtts) - rtt_s) <= 0.002 + 0.1 * rtt_s
    assert stats["c2s"]["frames_sent"] >= 10 and stats["s2c"]["frames_sent"] >= 10


@pytest.mark.root
def test_a_policed_transfer_loses_frames_and_stays_below_the_rate(namespaces: None) -> None:
    rate_bps, burst_bytes = 1e6, 4_000
    config = TestbedConfig(rtt_s=0.02, hook=HookSpec.policer(rate_bps, burst_bytes))
    with open_testbed(config) as testbed:
        result = testbed.fetch(300_000, timeout_s=30)
    assert result.outcome == "ok"
    assert result.relay_dropped_frames > 0
    assert result.retransmits is not None and result.retransmits > 0
    assert result.goodput_bps is not None and result.goodput_bps < rate_bps
    # The bucket's own bound: no more than burst + rate * t went through.
    assert result.total_s is not None
    passed = result.relay["hook"]["passed_ip_bytes"]
    assert passed <= burst_bytes + rate_bps / 8 * result.total_s


@pytest.mark.root
def test_the_shaper_queues_in_tbf_and_keeps_to_its_rate(namespaces: None) -> None:
    rate_bps, burst_bytes = 1e6, 16_000
    config = TestbedConfig(rtt_s=0.02, shaper=ShaperSpec(rate_bps, burst_bytes, 64_000))
    with open_testbed(config) as testbed:
        result = testbed.fetch(250_000, timeout_s=30)
    assert result.outcome == "ok"
    assert result.relay_dropped_frames == 0  # the relay passes all; tbf does the work
    assert result.qdisc is not None and result.qdisc["packets"] > 170
    assert result.total_s is not None
    # tbf's drops reach the relay as ENOBUFS on send, and are counted there too.
    assert result.relay["s2c"]["tail_drops"] == result.qdisc["drops"]
    # tbf counts IP bytes (stab overhead -14), so the bucket's bound holds for them.
    assert result.qdisc["bytes"] <= burst_bytes + rate_bps / 8 * result.total_s


@pytest.mark.root
def test_cleanup_after_the_body_raises(namespaces: None) -> None:
    with pytest.raises(RuntimeError), open_testbed() as testbed:
        names = testbed.namespaces
        inodes = _netns_inodes(names)
        assert set(names) <= set(list_netns())
        raise RuntimeError("body failed")
    _assert_removed(names, inodes)


@pytest.mark.root
def test_cleanup_after_the_relay_was_killed(namespaces: None) -> None:
    with open_testbed() as testbed:
        names, inodes = testbed.namespaces, _netns_inodes(testbed.namespaces)
        testbed.kill_relay()
    _assert_removed(names, inodes)


_OWNER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from throttle_lab.emu.testbed import open_testbed
    with open_testbed() as testbed:
        print(json.dumps(testbed.namespaces), flush=True)
        time.sleep(60)
    """
)


def _start_owner() -> tuple[subprocess.Popen[str], tuple[str, ...], set[int]]:
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER_SCRIPT], stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    names = tuple(json.loads(owner.stdout.readline()))
    return owner, names, _netns_inodes(names)


@pytest.mark.root
def test_sigterm_to_the_owner_removes_its_testbed(namespaces: None) -> None:
    owner, names, inodes = _start_owner()
    owner.send_signal(signal.SIGTERM)
    assert owner.wait(timeout=20) == 128 + signal.SIGTERM
    _assert_removed(names, inodes)


@pytest.mark.root
def test_cleanup_stale_removes_what_a_killed_run_left(namespaces: None) -> None:
    owner, names, inodes = _start_owner()
    owner.kill()  # no chance to clean up
    owner.wait(timeout=10)
    assert set(names) <= set(list_netns())  # left behind
    deadline = time.monotonic() + 5
    while _processes_in(inodes) and time.monotonic() < deadline:
        time.sleep(0.05)  # the relay and server die with their parent (PDEATHSIG)
    removed = cleanup_stale()
    assert set(names) <= set(removed)
    _assert_removed(names, inodes)
