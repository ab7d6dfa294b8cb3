"""The scenario's device in the kernel testbed: frames, the DeviceHook, the daemon, the CLI.

The first half checks the pure parts anywhere: frame parsing and forged RSTs, and the
hook's verdicts on hand-made frames (police, shape, reset, blackhole, split hello, class
from the address). The second half (marked ``root``) runs real TLS through a real
testbed and skips cleanly without root or namespaces.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from throttle_lab.core import split_client_hello
from throttle_lab.emu.testbed import (
    STATE_ROOT,
    DeviceHook,
    Direction,
    HttpsLoad,
    Lab,
    LabConfig,
    cleanup_stale,
    client_hello,
    forge_rst,
    https_load,
    lab_down,
    lab_up,
    list_netns,
    open_lab,
    parse_tcp_frame,
)
from throttle_lab.emu.testbed._frames import TCP_ACK, TCP_RST, TCP_SYN, internet_checksum
from throttle_lab.emu.testbed._lab import daemon_running
from throttle_lab.emu.testbed._lab_layout import plan_layout
from throttle_lab.emu.testbed._netns import NETNS_ETC_DIR, parse_netns_name
from throttle_lab.errors import TestbedError
from throttle_lab.scenario import Scenario, parse_scenario

SCENARIO_TOML = """
[scenario]
name = "testbed-device"
start = 2021-03-10T00:00:00Z
horizon = "1d"
seed = 1

[population]
subscribers = 10

[population.classes.mobile]
share = 0.5
down = "8mbit"
up = "2mbit"
rtt = "20ms"
loss = 0.0

[population.classes.fixed]
share = 0.5
down = "50mbit"
up = "20mbit"
rtt = "20ms"
loss = 0.0

[[workload.media]]
kind = "photo"
name = "photo"
hosts = { "pbs.twimg.com" = 1.0, "sun9-1.userapi.com" = 1.0 }
size = "100KB"
per_subscriber_per_day = 1

[[policies]]
name = "reset"
match = ["reset.test"]
action = { kind = "reset" }
[policies.coverage.mobile]

[[policies]]
name = "blackhole"
match = ["blackhole.test"]
action = { kind = "blackhole" }
[policies.coverage.mobile]

[[policies]]
name = "shape"
match = ["shape.test"]
action = { kind = "shape", rate = "1mbit", burst = "16KB", queue = "64KB" }
[policies.coverage.mobile]

[[policies]]
name = "police"
match = ["*.twimg.com"]
action = { kind = "police", rate = "1mbit", burst = "16KB" }
[policies.coverage.mobile]
"""
RATE_BPS, BURST_BYTES = 1e6, 16_000
CLASSES = {"mobile": "198.18.1.0/24", "fixed": "198.18.2.0/24"}
CLIENT_MAC, SERVER_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
MOBILE, FIXED, SERVER = "198.18.1.1", "198.18.2.1", "198.18.0.1"
UP, DOWN = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
FULL = b"x" * 1460  # a full segment without TCP options: a 1500-byte IP packet
CLIENT_SEQ, SERVER_SEQ = 1000, 5000


def scenario() -> Scenario:
    return parse_scenario(SCENARIO_TOML, source="testbed-device")


def frame(
    *, up: bool, payload: bytes = b"", flags: int = TCP_ACK, client: str = MOBILE, port: int = 40000
) -> bytes:
    """A valid Ethernet/IPv4/TCP frame between ``client`` and the server, either way."""
    ends = (socket.inet_aton(client), port, CLIENT_SEQ, SERVER_SEQ)
    other = (socket.inet_aton(SERVER), 443, SERVER_SEQ, CLIENT_SEQ)
    (src, sport, seq, ack), (dst, dport, _, _) = (ends, other) if up else (other, ends)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    tcp = tcp[:16] + struct.pack("!H", internet_checksum(pseudo + tcp + payload)) + tcp[18:]
    length = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    macs = SERVER_MAC + CLIENT_MAC if up else CLIENT_MAC + SERVER_MAC
    return macs + b"\x08\x00" + ip + tcp + payload


def open_flow(hook: DeviceHook, sni: str | None, **where: str) -> list[bool]:
    """Handshake and a ClientHello at t=0; the hello's verdict (forwarded?)."""
    client = where.get("client", MOBILE)
    hook.judge(UP, frame(up=True, flags=TCP_SYN, client=client), now=0.0)
    hook.judge(DOWN, frame(up=False, flags=TCP_SYN | TCP_ACK, client=client), now=0.0)
    hello = frame(up=True, payload=client_hello(sni), client=client)
    return [hook.judge(UP, hello, now=0.0).forward]


def new_hook() -> DeviceHook:
    return DeviceHook(scenario(), now=0.0, class_prefixes=CLASSES)


# -- frames ----------------------------------------------------------------------------


def test_parse_tcp_frame_reads_what_the_device_needs() -> None:
    parsed = parse_tcp_frame(frame(up=True, payload=b"hello") + b"\0" * 6)  # Ethernet padding
    assert parsed is not None
    assert (parsed.src_ip, parsed.dst_ip) == (socket.inet_aton(MOBILE), socket.inet_aton(SERVER))
    assert (parsed.src_port, parsed.dst_port, parsed.seq, parsed.ack) == (40000, 443, 1000, 5000)
    assert (parsed.payload, parsed.ip_length, parsed.flags) == (b"hello", 45, TCP_ACK)
    assert (parsed.src_mac, parsed.dst_mac) == (CLIENT_MAC, SERVER_MAC)


def test_parse_tcp_frame_leaves_other_frames_alone() -> None:
    tcp = frame(up=True, payload=b"abc")
    arp = tcp[:12] + b"\x08\x06" + tcp[14:]
    udp = tcp[:23] + b"\x11" + tcp[24:]
    fragment = tcp[:20] + b"\x20\x00" + tcp[22:]  # more fragments follow
    truncated = tcp[:-10]  # the IP length says more than the frame has
    for other in (arp, udp, fragment, truncated, b"", b"\x00" * 60):
        assert parse_tcp_frame(other) is None


@given(st.binary(max_size=120))
def test_parse_tcp_frame_never_raises(tail: bytes) -> None:
    header = frame(up=True)[:34]  # Ethernet and IPv4 headers, then anything
    parse_tcp_frame(header + tail)
    parse_tcp_frame(tail)


def test_forged_rst_has_valid_checksums_and_the_given_sequence() -> None:
    rst = forge_rst(
        src_mac=CLIENT_MAC,
        dst_mac=SERVER_MAC,
        src_ip=socket.inet_aton(MOBILE),
        dst_ip=socket.inet_aton(SERVER),
        src_port=40000,
        dst_port=443,
        seq=123456,
    )
    parsed = parse_tcp_frame(rst)
    assert parsed is not None and parsed.flags == TCP_RST and parsed.seq == 123456
    ip, tcp = rst[14:34], rst[34:]
    assert internet_checksum(ip) == 0
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    assert internet_checksum(pseudo + tcp) == 0


# -- the hook on hand-made frames ----------------------------------------------------------


def test_a_throttling_hello_polices_each_direction_with_its_own_bucket() -> None:
    hook = new_hook()
    assert open_flow(hook, "pbs.twimg.com") == [True]
    down = [hook.judge(DOWN, frame(up=False, payload=FULL), now=0.0).forward for _ in range(12)]
    assert down == [True] * 10 + [False] * 2  # 10 x 1500 bytes fit in 16 KB, 11 do not
    # The upload's bucket held only the hello so far: ten full packets still pass.
    up = [hook.judge(UP, frame(up=True, payload=FULL), now=0.0).forward for _ in range(10)]
    assert up == [True] * 10
    assert hook.judge(DOWN, frame(up=False, payload=FULL), now=0.012).forward  # 1500 B refilled
    counters = hook.report()["classes"]["mobile"]
    assert (counters["flows"], counters["throttled_flows"], counters["dropped_packets"]) == (
        1,
        1,
        2,
    )
    assert hook.report()["recent"][0]["sni"] == "pbs.twimg.com"


def test_a_hello_split_over_two_segments_is_not_recognised() -> None:
    hook = new_hook()
    hook.judge(UP, frame(up=True, flags=TCP_SYN), now=0.0)
    head, tail = split_client_hello(client_hello("pbs.twimg.com"))
    assert hook.judge(UP, frame(up=True, payload=head), now=0.0).forward
    assert hook.judge(UP, frame(up=True, payload=tail), now=0.0).forward
    down = [hook.judge(DOWN, frame(up=False, payload=FULL), now=0.0).forward for _ in range(30)]
    assert all(down)
    assert hook.report()["classes"]["mobile"]["throttled_flows"] == 0


def test_reset_drops_and_sends_each_end_the_rst_it_expects() -> None:
    hook = new_hook()
    hook.judge(UP, frame(up=True, flags=TCP_SYN), now=0.0)
    verdict = hook.judge(UP, frame(up=True, payload=client_hello("reset.test")), now=0.0)
    assert not verdict.forward
    (to_server_direction, to_server), (to_client_direction, to_client) = verdict.inject
    assert (to_server_direction, to_client_direction) == (UP, DOWN)
    server_rst, client_rst = parse_tcp_frame(to_server), parse_tcp_frame(to_client)
    assert server_rst is not None and client_rst is not None
    assert (server_rst.dst_ip, server_rst.dst_port) == (socket.inet_aton(SERVER), 443)
    assert server_rst.seq == CLIENT_SEQ  # the dropped hello's own sequence number
    assert (client_rst.dst_ip, client_rst.dst_port) == (socket.inet_aton(MOBILE), 40000)
    assert client_rst.seq == SERVER_SEQ  # what the client acknowledged: its next expected
    assert client_rst.dst_mac == CLIENT_MAC and server_rst.dst_mac == SERVER_MAC
    # Later segments are reset too; a RST itself is never answered.
    assert len(hook.judge(DOWN, frame(up=False, payload=b"x"), now=0.1).inject) == 2
    assert hook.judge(UP, frame(up=True, flags=TCP_RST), now=0.1).inject == ()
    assert hook.report()["classes"]["mobile"]["blocked_flows"] == 1


def test_blackhole_drops_everything_and_injects_nothing() -> None:
    hook = new_hook()
    assert open_flow(hook, "blackhole.test") == [False]
    verdicts = [hook.judge(DOWN, frame(up=False, payload=b"x"), now=t) for t in (0.1, 5.0)]
    assert [(v.forward, v.inject) for v in verdicts] == [(False, ())] * 2


def test_shape_holds_frames_over_the_burst_until_their_turn() -> None:
    hook = new_hook()
    assert open_flow(hook, "shape.test") == [True]
    verdicts = [hook.judge(DOWN, frame(up=False, payload=FULL), now=0.0) for _ in range(13)]
    assert all(v.forward for v in verdicts)
    assert [v.send_at for v in verdicts[:10]] == [None] * 10
    held = [v.send_at for v in verdicts[10:]]
    assert held == pytest.approx([0.004, 0.016, 0.028])  # 1500 B every 12 ms at 1 Mbit/s


def test_the_class_comes_from_the_source_address() -> None:
    hook = new_hook()
    # The test scenario covers mobile only: a fixed-line client's hello passes untouched.
    open_flow(hook, "pbs.twimg.com", client=FIXED)
    passed = [
        hook.judge(DOWN, frame(up=False, payload=FULL, client=FIXED), now=0.0).forward
        for _ in range(30)
    ]
    assert all(passed)
    open_flow(hook, "pbs.twimg.com", client="10.9.8.7")  # in no class prefix
    report = hook.report()["classes"]
    assert (report["fixed"]["flows"], report["fixed"]["throttled_flows"]) == (1, 0)
    assert report["(no class)"]["flows"] == 1 and report["mobile"]["flows"] == 0


def test_non_tcp_frames_pass_and_garbage_never_raises() -> None:
    hook = new_hook()
    arp = b"\xff" * 6 + CLIENT_MAC + b"\x08\x06" + b"\0" * 28
    assert hook.judge(UP, arp, now=0.0).forward
    assert hook.judge(DOWN, b"\x01\x02", now=0.0).forward


@given(st.binary(max_size=200), st.booleans())
def test_the_hook_never_raises_on_any_bytes(tail: bytes, up: bool) -> None:
    hook = new_hook()
    hook.judge(UP if up else DOWN, frame(up=up)[:54] + tail, now=0.0)


# -- configuration ---------------------------------------------------------------------


def test_lab_config_round_trips_through_json(tmp_path: Path) -> None:
    config = LabConfig(
        str(tmp_path / "s.toml"), overrides=("a=1",), classes=("mobile",), rtt_s=0.05
    )
    assert LabConfig.from_json(config.to_json()) == config


def test_the_layout_names_belong_to_their_owner_and_classes_get_their_own_prefix() -> None:
    layout = plan_layout(4242, ["mobile", "fixed"])
    assert all(parse_netns_name(name) is not None for name in layout.namespaces)
    assert {parse_netns_name(name)[0] for name in layout.namespaces} == {4242}  # type: ignore[index]
    assert [slot.prefix for slot in layout.classes] == ["198.18.1.0/24", "198.18.2.0/24"]
    assert layout.slot("fixed").address == "198.18.2.1"


def test_client_hello_is_a_tls_handshake_record_with_the_name() -> None:
    hello = client_hello("pbs.twimg.com", ssl.create_default_context())
    assert hello[0] == 0x16 and b"pbs.twimg.com" in hello


# -- root: a real testbed ------------------------------------------------------------


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


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "testbed-device.toml"
    path.write_text(SCENARIO_TOML)
    return path


@pytest.fixture(scope="module")
def shared_lab(namespaces: None, scenario_file: Path) -> Iterator[Lab]:
    config = LabConfig(str(scenario_file), name=f"pytest-{os.getpid()}", rtt_s=0.02)
    with open_lab(config) as lab:
        yield lab


@pytest.fixture
def lab(shared_lab: Lab) -> Lab:
    """The module's testbed with a fresh device (no flows, zero counters)."""
    shared_lab.reset()
    return shared_lab


def fetch(lab: Lab, sni: str, size: int, **options: Any) -> HttpsLoad:
    device_class = options.pop("device_class", "mobile")
    return https_load(
        lab.client_socket(device_class),
        (lab.layout.server_address, 443),
        sni=sni,
        path=f"/bytes/{size}",
        context=lab.client_context(),
        timeout_s=options.pop("timeout_s", 30.0),
        **options,
    )


def counters(lab: Lab, device_class: str = "mobile") -> dict[str, int]:
    classes: dict[str, dict[str, int]] = lab.stats()["hook"]["classes"]
    return classes[device_class]


def bucket_bound_bps(load: HttpsLoad) -> float:
    """The most a policed download can average: the bucket plus the rate, over its time."""
    assert load.total_s is not None
    return (BURST_BYTES * 8 + RATE_BPS * load.total_s) / load.total_s


@pytest.mark.root
def test_a_throttled_name_gets_about_the_policed_rate_with_real_drops(lab: Lab) -> None:
    load = fetch(lab, "pbs.twimg.com", 300_000)
    assert load.outcome == "ok" and load.body_bytes == 300_000, load
    assert load.goodput_bps is not None
    assert 0.5 * RATE_BPS < load.goodput_bps <= bucket_bound_bps(load)
    seen = counters(lab)
    assert (seen["flows"], seen["throttled_flows"]) == (1, 1)
    stats = lab.stats()
    # Frames were dropped, yet every byte arrived: the server's kernel resent them.
    assert stats["s2c"]["frames_dropped"] == seen["dropped_packets"] > 0
    assert sum(stats["kernel_drops"].values()) == 0


@pytest.mark.root
def test_a_second_testbed_of_the_same_name_is_refused(lab: Lab) -> None:
    config = LabConfig(lab.state["scenario_path"], name=lab.name)
    with pytest.raises(TestbedError, match="already up"):
        lab_up(config)
    assert Lab.attach(lab.name).pid == lab.pid


@pytest.mark.root
def test_an_unthrottled_name_and_an_uncovered_class_pass_at_full_speed(lab: Lab) -> None:
    control = fetch(lab, "sun9-1.userapi.com", 300_000)
    fixed = fetch(lab, "pbs.twimg.com", 300_000, device_class="fixed")
    for load in (control, fixed):
        assert load.outcome == "ok" and load.goodput_bps is not None, load
        assert load.goodput_bps > 10 * RATE_BPS
    assert counters(lab)["dropped_packets"] == counters(lab, "fixed")["dropped_packets"] == 0
    assert counters(lab, "fixed")["flows"] == 1


@pytest.mark.root
def test_a_split_hello_passes_and_the_same_hello_whole_is_caught(lab: Lab) -> None:
    split = fetch(lab, "pbs.twimg.com", 300_000, split_hello=True)
    assert split.outcome == "ok" and split.goodput_bps is not None, split
    assert split.goodput_bps > 10 * RATE_BPS
    assert counters(lab)["throttled_flows"] == 0
    whole = fetch(lab, "pbs.twimg.com", 300_000)
    assert whole.outcome == "ok" and whole.goodput_bps is not None, whole
    assert whole.goodput_bps <= bucket_bound_bps(whole)
    assert counters(lab)["throttled_flows"] == 1


def tcp_pair(lab: Lab, port: int) -> tuple[socket.socket, socket.socket]:
    """A plain TCP connection from the mobile namespace to a listener next to the origin."""
    with lab.server_socket() as listener:
        listener.bind((lab.layout.server_address, port))
        listener.listen(1)
        client = lab.client_socket("mobile")
        client.settimeout(10)
        client.connect((lab.layout.server_address, port))
        listener.settimeout(10)
        server, _ = listener.accept()
    server.settimeout(10)
    return client, server


@pytest.mark.root
def test_reset_sends_both_ends_a_rst_they_accept(lab: Lab) -> None:
    client, server = tcp_pair(lab, 9001)
    with client, server:
        started = time.monotonic()
        client.sendall(client_hello("reset.test"))
        with pytest.raises(ConnectionResetError):
            server.recv(4096)
        with pytest.raises(ConnectionResetError):
            client.recv(4096)
        assert time.monotonic() - started < 1.0
    seen, stats = counters(lab), lab.stats()
    assert seen["blocked_flows"] == 1 and seen["injected_resets"] >= 2
    assert stats["c2s"]["frames_injected"] >= 1 and stats["s2c"]["frames_injected"] >= 1
    # And over TLS: the handshake is cut off with a reset, not a timeout.
    assert fetch(lab, "reset.test", 1000, timeout_s=5).outcome == "reset"


@pytest.mark.root
def test_blackhole_lets_the_handshake_time_out(lab: Lab) -> None:
    load = fetch(lab, "blackhole.test", 1000, timeout_s=2)
    assert load.outcome == "timeout" and load.tls_s is None, load
    seen = counters(lab)
    assert seen["blocked_flows"] == 1 and seen["dropped_packets"] > 0
    assert seen["injected_resets"] == 0


@pytest.mark.root
def test_upload_and_download_are_policed_each_with_its_own_bucket(lab: Lab) -> None:
    size = 150_000
    client, server = tcp_pair(lab, 9002)
    done: dict[str, float] = {}

    def drain(sock: socket.socket, name: str, expected: int) -> None:
        got = 0
        while got < expected and (chunk := sock.recv(65536)):
            got += len(chunk)
        done[name] = time.monotonic()

    with client, server:
        hello = client_hello("pbs.twimg.com")
        started = time.monotonic()
        client.sendall(hello)  # the device sees a throttled name; the rest is bulk data
        threads = [
            threading.Thread(target=drain, args=(server, "upload", len(hello) + size)),
            threading.Thread(target=server.sendall, args=(b"d" * size,)),
            threading.Thread(target=client.sendall, args=(b"u" * size,)),
        ]
        for thread in threads:
            thread.start()
        drain(client, "download", size)
        for thread in threads:
            thread.join(timeout=30)
    elapsed = {name: at - started for name, at in done.items()}
    stats = lab.stats()
    assert stats["c2s"]["frames_dropped"] > 0 and stats["s2c"]["frames_dropped"] > 0
    for name in ("upload", "download"):
        # Each direction on its own is held to its bucket: burst + rate * t ...
        assert size * 8 <= BURST_BYTES * 8 + RATE_BPS * elapsed[name]
    # ... but together they moved more than one bucket ever could: two buckets.
    both_bps = 2 * size * 8 / max(elapsed.values())
    assert both_bps > 1.3 * RATE_BPS, elapsed


def processes_in(inodes: set[int]) -> list[int]:
    """Processes whose network namespace is one of ``inodes``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino in inodes:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def assert_all_gone(name: str, namespaces: list[str], inodes: set[int]) -> None:
    assert not set(namespaces) & set(list_netns())
    assert processes_in(inodes) == []
    assert not any((NETNS_ETC_DIR / netns).exists() for netns in namespaces)
    assert not (STATE_ROOT / name).exists()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert " tl-" not in links  # nothing was ever in the root namespace


def start_lab(scenario_file: Path, name: str) -> tuple[Lab, list[str], set[int]]:
    lab = lab_up(LabConfig(str(scenario_file), name=name, rtt_s=0.0))
    names = lab.layout.namespaces
    inodes = {os.stat(f"/run/netns/{netns}").st_ino for netns in names}
    assert processes_in(inodes)  # the origin runs in the server namespace
    return lab, names, inodes


@pytest.mark.root
@pytest.mark.parametrize("remover", ["lab_down", "cleanup_stale"])
def test_a_killed_daemon_leaves_nothing_after_cleanup(
    namespaces: None, scenario_file: Path, remover: str
) -> None:
    name = f"pytest-kill-{os.getpid()}"
    lab, names, inodes = start_lab(scenario_file, name)
    lab.kill_daemon()
    assert set(names) <= set(list_netns())  # left behind by the crash
    with pytest.raises(TestbedError, match="not running"):
        Lab.attach(name)
    if remover == "lab_down":
        assert set(lab_down(name)) == set(names)
    else:
        deadline = time.monotonic() + 5
        while processes_in(inodes) and time.monotonic() < deadline:
            time.sleep(0.05)  # the origin dies with the daemon (PDEATHSIG)
        assert set(names) <= set(cleanup_stale())
        lab_down(name)  # the state directory
    assert_all_gone(name, names, inodes)


@pytest.mark.root
def test_down_cleans_up_after_the_cli_was_killed_during_up(
    namespaces: None, scenario_file: Path
) -> None:
    name = f"pytest-cli-{os.getpid()}"
    cli = subprocess.Popen(
        [sys.executable, "-m", "throttle_lab", "testbed", "up", str(scenario_file), "--name", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid_file = STATE_ROOT / name / "daemon.pid"
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    cli.kill()
    cli.wait(timeout=10)
    daemon_pid = int(pid_file.read_text())
    time.sleep(0.3)  # the daemon goes on building on its own
    lab_down(name)
    assert not daemon_running(daemon_pid)
    assert not [n for n in list_netns() if n.startswith(f"tl-{daemon_pid}-")]
    assert not (STATE_ROOT / name).exists()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "throttle_lab", "testbed", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.root
def test_the_cli_brings_a_testbed_up_runs_curl_in_it_and_removes_it(
    namespaces: None, scenario_file: Path
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    name = f"pytest-cli-e2e-{os.getpid()}"
    flag = ("--name", name)
    try:
        started = run_cli("up", str(scenario_file), *flag, "--rtt", "10ms")
        assert started.returncode == 0, started.stderr
        assert "is up" in started.stdout
        speeds = {}
        for host in ("pbs.twimg.com", "sun9-1.userapi.com"):
            curl = run_cli(
                "exec", *flag, "--class", "mobile", "--",
                "curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download}",
                f"https://{host}/bytes/200000",
            )  # fmt: skip
            assert curl.returncode == 0, curl.stderr
            speeds[host] = float(curl.stdout) * 8
        assert (
            speeds["pbs.twimg.com"] <= RATE_BPS * 1.2 < 10 * RATE_BPS < speeds["sun9-1.userapi.com"]
        )
        status = run_cli("status", *flag)
        assert "1 throttled" in status.stdout and "pbs.twimg.com: police" in status.stdout
    finally:
        stopped = run_cli("down", *flag)
    assert stopped.returncode == 0 and "removed 4 namespaces" in stopped.stdout
    assert not (STATE_ROOT / name).exists()
