"""Who sits behind a censoring box: coverage per device class, decided by a stable hash.

"100 % of mobile and 50 % of non-mobile devices" (RKN, 10 March 2021) needs a rule for
*which* half. A :class:`Coverage` says what share of a device class is covered, counted
in which unit (subscribers, whole networks, or address prefixes) and during which window.
Which units are chosen is a pure function of (seed, policy name, unit key) through
blake2b, so the same scenario and seed cover the same subscribers in every process and
engine, and a different seed gives a different, equally sized set.

Engines with millions of media loads build a :class:`CoverageTable` once (one hash per
subscriber, network or prefix) and evaluate loads with numpy, not a Python call each.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

__all__ = [
    "Coverage",
    "CoverageTable",
    "CoverageUnit",
    "Subscriber",
    "build_coverage_table",
    "selection_draw",
]

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Subscriber:
    """Who opens the connection. ``address`` is an IPv4 address as an int (for prefixes)."""

    id: int
    device_class: str
    network: str
    address: int | None = None


class CoverageUnit(StrEnum):
    """What a coverage fraction counts: subscribers, whole networks, or address prefixes.

    "50 % of non-mobile" was never shown to be a per-subscriber coin flip; it more
    likely reflected which networks had the boxes (domain.md), hence the choice.
    """

    SUBSCRIBER = "subscriber"
    NETWORK = "network"
    PREFIX = "prefix"


def selection_draw(seed: int, policy: str, unit_key: str) -> float:
    """A uniform number in [0, 1) that depends only on its three arguments.

    blake2b rather than ``hash()``: stable across processes, Python versions and
    machines (``PYTHONHASHSEED`` randomises ``hash()`` of strings).
    """
    digest = hashlib.blake2b(f"{seed}\x1f{policy}\x1f{unit_key}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2.0**64


@dataclass(frozen=True, slots=True)
class Coverage:
    """Which share of one device class a policy reaches, by what unit, and when.

    ``start_s``/``end_s`` are seconds since the scenario start; ``None`` is open. The
    window is half-open: covered for ``start_s <= now < end_s``.
    """

    fraction: float = 1.0
    unit: CoverageUnit = CoverageUnit.SUBSCRIBER
    prefix_length: int = 24
    start_s: float | None = None
    end_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit", CoverageUnit(self.unit))
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {self.fraction!r}")
        if not 0 <= self.prefix_length <= 32:
            raise ValueError(f"prefix_length must be in [0, 32], got {self.prefix_length!r}")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must come after start_s ({self.start_s})")

    def active_at(self, *, now: float) -> bool:
        """Whether the coverage window contains ``now``."""
        return (self.start_s is None or now >= self.start_s) and (
            self.end_s is None or now < self.end_s
        )

    def prefix_key(self, address: int) -> str:
        """``'prefix:10.1.2.0/24'`` for the /N that contains an IPv4 address (as an int)."""
        shift = 32 - self.prefix_length
        network = (address >> shift) << shift if shift < 32 else 0
        return f"prefix:{ipaddress.IPv4Address(network)}/{self.prefix_length}"

    def unit_key(self, subscriber: Subscriber) -> str:
        """The key whose hash decides selection: subscriber id, network name or prefix."""
        if self.unit is CoverageUnit.SUBSCRIBER:
            return f"subscriber:{subscriber.id}"
        if self.unit is CoverageUnit.NETWORK:
            return f"network:{subscriber.network}"
        if subscriber.address is None:
            raise ValueError(f"prefix coverage needs an address for subscriber {subscriber.id}")
        return self.prefix_key(subscriber.address)


@dataclass(frozen=True, slots=True)
class CoverageTable:
    """Per-subscriber coverage of one policy, as arrays, for vectorised engines.

    ``selected`` is time-independent (the hash); ``start_s``/``end_s`` are the window of
    each subscriber's class (``-inf``/``inf`` when open). A population engine builds this
    once and then evaluates millions of loads with :meth:`covered_at`, no Python call each.
    """

    selected: BoolArray
    start_s: FloatArray
    end_s: FloatArray

    def covered_at(
        self, now: float | FloatArray, rows: npt.NDArray[np.intp] | None = None
    ) -> BoolArray:
        """Covered mask at ``now`` (a scalar, or one time per row of ``rows``)."""
        if rows is None:
            return self.selected & (now >= self.start_s) & (now < self.end_s)
        return self.selected[rows] & (now >= self.start_s[rows]) & (now < self.end_s[rows])


def build_coverage_table(
    policy: str,
    seed: int,
    coverage: Mapping[str, Coverage],
    network_marks: Mapping[str, bool],
    ids: npt.ArrayLike,
    device_classes: npt.ArrayLike,
    networks: npt.ArrayLike,
    addresses: npt.ArrayLike | None = None,
) -> CoverageTable:
    """Coverage of many subscribers (parallel arrays) by one policy.

    Networks and prefixes are hashed once per distinct value, subscribers once each;
    subscribers of a class the policy does not name are never selected. With unit
    ``network`` an explicit mark in ``network_marks`` wins over the hash.
    """
    ids_a = np.asarray(ids)
    classes_a = np.asarray(device_classes).astype(str)
    networks_a = np.asarray(networks).astype(str)
    count = len(ids_a)
    selected = np.zeros(count, dtype=np.bool_)
    start = np.full(count, -np.inf)
    end = np.full(count, np.inf)

    def chosen(key: str, fraction: float) -> bool:
        return selection_draw(seed, policy, key) < fraction

    for class_name, cov in coverage.items():
        rows = np.flatnonzero(classes_a == class_name)
        if rows.size == 0:
            continue
        start[rows] = -np.inf if cov.start_s is None else cov.start_s
        end[rows] = np.inf if cov.end_s is None else cov.end_s
        if cov.unit is CoverageUnit.NETWORK:
            keys, inverse = np.unique(networks_a[rows], return_inverse=True)
            picks = [network_marks.get(str(k), chosen(f"network:{k}", cov.fraction)) for k in keys]
        elif cov.unit is CoverageUnit.PREFIX:
            if addresses is None:
                raise ValueError(f"policy {policy!r}: prefix coverage needs subscriber addresses")
            shift = 32 - cov.prefix_length
            prefixes = (np.asarray(addresses, dtype=np.int64)[rows] >> shift) << shift
            keys, inverse = np.unique(prefixes, return_inverse=True)
            picks = [chosen(cov.prefix_key(int(k)), cov.fraction) for k in keys]
        else:
            keys, inverse = ids_a[rows], np.arange(rows.size)
            picks = [chosen(f"subscriber:{int(k)}", cov.fraction) for k in keys]
        selected[rows] = np.asarray(picks, dtype=np.bool_)[inverse]
    return CoverageTable(selected, start, end)
