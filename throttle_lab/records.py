"""One record schema for every media load, simulated, emulated or probed.

A simulated run, an emulated run and a live measurement produce the same rows, so that
``analysis``, plots and reports never care where a load came from. Columnar by design:
engines fill numpy arrays per column (millions of rows), probes append one
:class:`LoadRecord` at a time; both end up as one table (``pandas.DataFrame``).

Times: ``start_s`` is seconds since the start of the run (the scenario's start for
simulations); ``ttfb_s`` and ``total_s`` are durations from the start of the load (the
first SYN, or the request for a reused connection). A load that did not finish has
``total_s`` = time spent until it ended and an ``outcome`` other than ``ok``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["COLUMNS", "LoadRecord", "Outcome", "Source"]


class Outcome(StrEnum):
    """How a load ended. Failure is data: every outcome is a row, never a crash."""

    OK = "ok"
    TIMEOUT = "timeout"  # gave up; may still have made progress (bytes_received > 0)
    RESET = "reset"
    DNS_ERROR = "dns_error"
    CONNECT_ERROR = "connect_error"
    TLS_ERROR = "tls_error"
    HTTP_ERROR = "http_error"


class Source(StrEnum):
    SIMULATED = "simulated"
    EMULATED = "emulated"
    PROBED = "probed"


@dataclass(slots=True)
class LoadRecord:
    """One media load. Required fields first; the rest default to "not known"."""

    subscriber: int  # a simulated subscriber, or the probe's vantage point (0)
    device_class: str
    network: str
    kind: str  # photo | video_segment | page_asset | other ...
    host: str  # the SNI the client sent ("" for none)
    size_bytes: int  # object size (expected size for failed loads)
    start_s: float
    ttfb_s: float  # NaN when no byte arrived
    total_s: float
    goodput_bps: float  # size_bytes * 8 / total_s for completed loads, else bytes so far
    throttled: bool  # the policy hit this flow (simulation/emulation; probes: unknown=False)
    action: str  # police | shape | reset | blackhole | none
    outcome: str = Outcome.OK.value
    source: str = Source.SIMULATED.value
    media: str = ""  # the scenario's name for this media (kinds repeat: twitter vs control photos)
    policy: str = ""  # name of the policy that matched, "" for none
    rule: str = ""  # the rule that matched, "" for none
    bytes_received: int = -1  # -1: not measured (simulation: equals size_bytes when ok)
    counterfactual_total_s: float = float("nan")  # the same load with no policy
    dns_s: float = float("nan")
    connect_s: float = float("nan")
    tls_s: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)  # source-specific keys

    @property
    def slowdown(self) -> float:
        return self.total_s / self.counterfactual_total_s

    def to_row(self) -> dict[str, Any]:
        """A flat dict with exactly :data:`COLUMNS` (``extra`` is left out)."""
        row = asdict(self)
        row.pop("extra")
        return row


COLUMNS: tuple[str, ...] = tuple(
    name for name in LoadRecord.__dataclass_fields__ if name != "extra"
)
