"""One transfer's result, put together from what the client, server and relay reported."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["TransferResult", "transfer_result"]


@dataclass(frozen=True)
class TransferResult:
    """A transfer through the testbed, in the same terms as ``throttle-lab flow --json``.

    ``goodput_bps`` is ``size * 8 / total_s`` (from the SYN to the last byte).
    ``retransmits`` is the server's ``tcpi_total_retrans``. ``relay_dropped_frames``
    counts what the hook dropped (both directions), ``shaper_drops`` what the tbf
    dropped, ``kernel_drops`` frames lost for want of socket buffer in the relay
    (should be 0: anything else means the testbed, not the censor, lost them).
    ``relay_lateness_max_s`` is how late the relay sent its latest frame.
    """

    outcome: str
    size_bytes: int
    received_bytes: int
    total_s: float | None
    ttfb_s: float | None
    goodput_bps: float | None
    retransmits: int | None
    data_segments_sent: int | None
    relay_dropped_frames: int
    shaper_drops: int | None
    kernel_drops: int
    relay_lateness_max_s: float
    client: dict[str, Any]
    server: dict[str, Any]
    relay: dict[str, Any]
    qdisc: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def drops(self) -> int:
        """Every frame the middlebox discarded, by policing or by the shaper's queue."""
        return self.relay_dropped_frames + (self.shaper_drops or 0)


def _optional_int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _optional_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def transfer_result(
    fetched: dict[str, Any],
    served: dict[str, Any],
    relay: dict[str, Any],
    qdisc: dict[str, Any] | None,
) -> TransferResult:
    """Combine the client's, server's, relay's and tc's reports of one transfer."""
    directions = [relay.get(key, {}) for key in ("c2s", "s2c")]
    shaper_drops = _optional_int(qdisc.get("drops")) if qdisc else None
    return TransferResult(
        outcome=str(fetched.get("outcome", "unknown")),
        size_bytes=int(fetched.get("size", 0)),
        received_bytes=int(fetched.get("received", 0)),
        total_s=_optional_float(fetched.get("total_s")),
        ttfb_s=_optional_float(fetched.get("ttfb_s")),
        goodput_bps=_optional_float(fetched.get("goodput_bps")),
        retransmits=_optional_int(served.get("total_retrans")),
        data_segments_sent=_optional_int(served.get("data_segs_out")),
        relay_dropped_frames=sum(int(d.get("frames_dropped", 0)) for d in directions),
        shaper_drops=shaper_drops,
        kernel_drops=sum(int(v) for v in relay.get("kernel_drops", {}).values()),
        relay_lateness_max_s=max(float(d.get("lateness_max_s", 0.0)) for d in directions),
        client=fetched,
        server=served,
        relay=relay,
        qdisc=qdisc,
    )
