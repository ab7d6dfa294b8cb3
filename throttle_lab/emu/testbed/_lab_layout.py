"""The scenario testbed's namespaces: one client namespace per device class, a
middlebox, a server; built with ``ip``/``tc`` (see ``_netns`` for why not pyroute2).

::

    [tl-P-0-cli0] tl-c ═══ tl-m0 ┐
    198.18.1.1 (mobile)          │  [tl-P-0-mb]                          [tl-P-0-srv]
    [tl-P-0-cli1] tl-c ═══ tl-m1 ┼─ relay + device ─ tl-ms ═══ tl-s     198.18.0.1
    198.18.2.1 (fixed)           ┘  (AF_PACKET, a delay per class)       origin :443, :80

Why a namespace per class rather than one client namespace with an address per class:
``testbed exec --class mobile -- CMD`` must make *any* command a mobile subscriber
(curl, a browser, a probe), and a command cannot be made to pick a source address
from outside; in a namespace whose only address is the class's, every socket has it.
Each class namespace also gets its own ``/etc/hosts`` (``ip netns exec`` mounts
``/etc/netns/<name>/hosts`` over it) naming the scenario's hosts at the origin, and its
own path in the relay (delay, loss) and, optionally, an access link (``tbf``).

All namespaces share one Ethernet segment, 198.18.0.0/16 (the benchmarking range,
which exists only in here), bridged by the relay: no router, no address in the root
namespace. Class k's subscribers are 198.18.(k+1).0/24, which is how the device tells
the classes apart. Offloads are off on every veth (MTU-sized frames, finished
checksums) and IPv6 is off (no router solicitations in the counters).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from throttle_lab.emu.testbed._netns import (
    NETNS_ETC_DIR,
    delete_netns,
    disable_offloads,
    list_netns,
    run_command,
)
from throttle_lab.errors import TestbedError

__all__ = [
    "MAX_CLASSES",
    "SERVER_ADDRESS",
    "ClassSlot",
    "LabLayout",
    "build_layout",
    "plan_layout",
    "remove_layout",
    "set_access_link",
]

SERVER_ADDRESS = "198.18.0.1"
MAX_CLASSES = 254
CLIENT_VETH, SERVER_VETH, MB_SERVER_VETH = "tl-c", "tl-s", "tl-ms"
_SEGMENT_PREFIX = 16
_MTU = 1500
_MIN_ACCESS_QUEUE_BYTES = 64_000


@dataclass(frozen=True)
class ClassSlot:
    """Where one device class lives: its namespace, address, prefix and relay port."""

    name: str
    netns: str
    address: str
    prefix: str
    relay_ifname: str


@dataclass(frozen=True)
class LabLayout:
    """Names and addresses of one scenario testbed (a plan until :func:`build_layout`)."""

    owner_pid: int
    classes: tuple[ClassSlot, ...]
    middlebox_netns: str
    server_netns: str
    server_address: str = SERVER_ADDRESS

    @property
    def namespaces(self) -> list[str]:
        return [slot.netns for slot in self.classes] + [self.middlebox_netns, self.server_netns]

    def slot(self, class_name: str) -> ClassSlot:
        for slot in self.classes:
            if slot.name == class_name:
                return slot
        known = ", ".join(slot.name for slot in self.classes)
        raise TestbedError(f"no device class {class_name!r} in this testbed (it has {known})")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LabLayout:
        classes = data["classes"]
        assert isinstance(classes, list)
        return cls(
            owner_pid=int(str(data["owner_pid"])),
            classes=tuple(ClassSlot(**slot) for slot in classes),
            middlebox_netns=str(data["middlebox_netns"]),
            server_netns=str(data["server_netns"]),
            server_address=str(data["server_address"]),
        )


def plan_layout(owner_pid: int, class_names: Iterable[str]) -> LabLayout:
    """Names for a testbed owned by ``owner_pid`` (who must outlive it: see ``_netns``)."""
    names = list(class_names)
    if not 1 <= len(names) <= MAX_CLASSES:
        raise TestbedError(f"a testbed holds 1 to {MAX_CLASSES} device classes, not {len(names)}")
    stem = f"tl-{owner_pid}-0"
    slots = tuple(
        ClassSlot(
            name=name,
            netns=f"{stem}-cli{index}",
            address=f"198.18.{index + 1}.1",
            prefix=f"198.18.{index + 1}.0/24",
            relay_ifname=f"tl-m{index}",
        )
        for index, name in enumerate(names)
    )
    return LabLayout(owner_pid, slots, f"{stem}-mb", f"{stem}-srv")


def _hosts_file(layout: LabLayout, netns: str, hosts: Iterable[str]) -> None:
    names = sorted({h.lower().rstrip(".") for h in hosts if h and "*" not in h})
    directory = NETNS_ETC_DIR / netns
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["127.0.0.1 localhost", f"{layout.server_address} origin {' '.join(names)}"]
    (directory / "hosts").write_text("\n".join(lines) + "\n")


def _add_netns(netns: str, *, endpoint: bool) -> None:
    run_command(["ip", "netns", "add", netns])
    # IPv6 off before the veths exist, so they never get link-local addresses.
    sysctls = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
    if endpoint:
        # Every load starts from scratch, as the model's connections do (no cached
        # ssthresh or RTT from the previous one).
        sysctls.append("net.ipv4.tcp_no_metrics_save=1")
    run_command(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", *sysctls])
    run_command(["ip", "-n", netns, "link", "set", "lo", "up"])


def _add_veth(netns: str, ifname: str, mb_netns: str, mb_ifname: str, address: str) -> None:
    # Made directly inside the namespaces: nothing ever appears in the root one.
    run_command(
        f"ip link add {ifname} netns {netns} type veth"
        f" peer name {mb_ifname} netns {mb_netns}".split()
    )
    for where, name in ((netns, ifname), (mb_netns, mb_ifname)):
        disable_offloads(where, name)
        run_command(f"ip -n {where} link set {name} mtu {_MTU} up".split())
    run_command(f"ip -n {netns} addr add {address}/{_SEGMENT_PREFIX} dev {ifname}".split())


def build_layout(layout: LabLayout, hosts: Iterable[str]) -> None:
    """Make the namespaces, veths, addresses and hosts files of ``layout``.

    On failure, what was made is removed again before the error is raised.
    """
    host_names = list(hosts)
    try:
        _add_netns(layout.middlebox_netns, endpoint=False)
        _add_netns(layout.server_netns, endpoint=True)
        _add_veth(
            layout.server_netns,
            SERVER_VETH,
            layout.middlebox_netns,
            MB_SERVER_VETH,
            layout.server_address,
        )
        for slot in layout.classes:
            _add_netns(slot.netns, endpoint=True)
            _add_veth(
                slot.netns, CLIENT_VETH, layout.middlebox_netns, slot.relay_ifname, slot.address
            )
            _hosts_file(layout, slot.netns, host_names)
    except BaseException:
        with contextlib.suppress(TestbedError):
            remove_layout(layout)
        raise


def remove_layout(layout: LabLayout) -> list[str]:
    """Delete every namespace of ``layout`` (and so its veths, qdiscs and processes).

    Idempotent; returns the namespaces that existed. Raises :class:`TestbedError` naming
    any that would not go, after trying them all.
    """
    present = set(list_netns())
    removed, errors = [], []
    for netns in layout.namespaces:
        try:
            delete_netns(netns)
        except TestbedError as exc:
            errors.append(str(exc))
            continue
        if netns in present:
            removed.append(netns)
    if errors:
        raise TestbedError("; ".join(errors))
    return removed


def _tbf(netns: str, ifname: str, rate_bps: float | None, queue_bytes: int) -> None:
    root = f"tc -n {netns} qdisc {{}} dev {ifname} root"
    run_command(root.format("del").split(), check=False)
    if rate_bps is None:
        return
    # Burst: two full frames, or 1 ms at the rate; tbf counts IP bytes (stab overhead
    # -14), as the relay's policer and the model do.
    burst = max(2 * (_MTU + 14), round(rate_bps / 8 * 0.001))
    run_command(
        root.format("add").split()
        + f"stab overhead -14 tbf rate {rate_bps:.0f}bit burst {burst} limit {queue_bytes}".split()
    )


def set_access_link(
    layout: LabLayout,
    class_name: str,
    *,
    down_bps: float | None,
    up_bps: float | None,
    rtt_s: float,
) -> None:
    """Shape a class's access link (``None``: no limit that way), as the model's: a rate
    with a queue of the larger of 64 KB and one bandwidth-delay product."""
    slot = layout.slot(class_name)
    for netns, ifname, rate in (
        (layout.middlebox_netns, slot.relay_ifname, down_bps),
        (slot.netns, CLIENT_VETH, up_bps),
    ):
        queue = max(_MIN_ACCESS_QUEUE_BYTES, round((rate or 0.0) / 8 * rtt_s))
        _tbf(netns, ifname, rate, queue)
