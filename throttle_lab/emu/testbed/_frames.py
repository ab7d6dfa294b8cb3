"""Ethernet/IPv4/TCP frames as the middlebox sees them: parsing, and the RSTs it forges.

The relay hands the device hook raw Ethernet frames read from an ``AF_PACKET`` socket.
:func:`parse_tcp_frame` takes out what a per-flow censor needs (addresses, ports,
sequence numbers, flags, the payload and the IP packet length) and returns ``None`` for
anything else: ARP, ICMP, UDP, IP fragments, IPv6, truncated or malformed frames. It
never raises on any bytes, because the bytes come from the peers.

:func:`forge_rst` builds the RST segments a RESET action injects. Offloads are off on
every veth of the testbed, so the kernels check these checksums: they are computed
here, with the TCP pseudo-header, as on the wire.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "TCP_ACK",
    "TCP_FIN",
    "TCP_RST",
    "TCP_SYN",
    "TcpFrame",
    "forge_rst",
    "internet_checksum",
    "parse_tcp_frame",
]

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_ETH_HEADER_BYTES = 14
_ETHERTYPE_IPV4 = 0x0800
_IPPROTO_TCP = 6
_MIN_IP_HEADER = 20
_MIN_TCP_HEADER = 20
_IP_MORE_FRAGMENTS = 0x2000
_IP_DONT_FRAGMENT = 0x4000
_IP_OFFSET_MASK = 0x1FFF
_FORGED_TTL = 64


@dataclass(frozen=True, slots=True)
class TcpFrame:
    """The parts of one TCP/IPv4 Ethernet frame that the device and the RST forger use.

    Addresses are the raw 4-byte (IP) and 6-byte (MAC) strings: they are dictionary keys
    on the per-frame path, where formatting them would cost more than the lookup.
    ``ip_length`` is the IPv4 total length, the size a policer counts.
    """

    src_mac: bytes
    dst_mac: bytes
    src_ip: bytes
    dst_ip: bytes
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    ip_length: int
    payload: bytes

    @property
    def is_rst(self) -> bool:
        return bool(self.flags & TCP_RST)


def parse_tcp_frame(frame: bytes) -> TcpFrame | None:
    """The TCP segment in ``frame``, or ``None`` when it is not a whole, unfragmented one."""
    if len(frame) < _ETH_HEADER_BYTES + _MIN_IP_HEADER + _MIN_TCP_HEADER:
        return None
    if int.from_bytes(frame[12:14], "big") != _ETHERTYPE_IPV4:
        return None
    version_ihl = frame[14]
    ip_header = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or ip_header < _MIN_IP_HEADER:
        return None
    ip_length = int.from_bytes(frame[16:18], "big")
    # A frame may carry Ethernet padding after the IP packet, never less than the packet.
    if ip_length > len(frame) - _ETH_HEADER_BYTES or ip_length < ip_header + _MIN_TCP_HEADER:
        return None
    fragment = int.from_bytes(frame[20:22], "big")
    if fragment & (_IP_MORE_FRAGMENTS | _IP_OFFSET_MASK) or frame[23] != _IPPROTO_TCP:
        return None
    tcp = _ETH_HEADER_BYTES + ip_header
    tcp_header = (frame[tcp + 12] >> 4) * 4
    end = _ETH_HEADER_BYTES + ip_length
    if tcp_header < _MIN_TCP_HEADER or tcp + tcp_header > end:
        return None
    src_port, dst_port, seq, ack = struct.unpack_from("!HHII", frame, tcp)
    return TcpFrame(
        src_mac=frame[6:12],
        dst_mac=frame[0:6],
        src_ip=frame[26:30],
        dst_ip=frame[30:34],
        src_port=src_port,
        dst_port=dst_port,
        seq=seq,
        ack=ack,
        flags=frame[tcp + 13] & 0x3F,
        ip_length=ip_length,
        payload=frame[tcp + tcp_header : end],
    )


def internet_checksum(data: bytes) -> int:
    """The 16-bit ones' complement checksum of RFC 1071."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def forge_rst(
    *,
    src_mac: bytes,
    dst_mac: bytes,
    src_ip: bytes,
    dst_ip: bytes,
    src_port: int,
    dst_port: int,
    seq: int,
) -> bytes:
    """An Ethernet frame carrying a bare RST from ``src`` to ``dst`` with sequence ``seq``.

    Linux accepts a RST only when its sequence number is exactly the next one it expects
    (RFC 5961; one merely inside the window earns a challenge ACK instead), so the caller
    picks ``seq`` from the segment that triggered the reset: see
    :meth:`~throttle_lab.emu.testbed.DeviceHook.judge`.
    """
    header_words = 5 << 4  # data offset: a bare 20-byte header
    tcp = struct.pack(
        "!HHIIBBHHH", src_port, dst_port, seq & 0xFFFFFFFF, 0, header_words, TCP_RST, 0, 0, 0
    )
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, _IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", internet_checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        _MIN_IP_HEADER + len(tcp),
        0,
        _IP_DONT_FRAGMENT,
        _FORGED_TTL,
        _IPPROTO_TCP,
        0,
        src_ip,
        dst_ip,
    )
    ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    return dst_mac + src_mac + _ETHERTYPE_IPV4.to_bytes(2, "big") + ip + tcp
