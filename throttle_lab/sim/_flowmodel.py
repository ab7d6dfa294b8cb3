"""The flow-level model: media-load latency for millions of loads, calibrated on the packet model.

How it is calibrated: for each distinct throttle (kind, rate, bucket, queue) a scenario
uses, and for no throttle (the counterfactual), the packet-level model runs once per point
of a small grid spanning the loads' own ranges of object size, RTT, access rate and loss
(log-spaced over the central 99 % of the loads; behind a throttle, access rates above 8x
the rate are one point, because there they cannot matter). The flow-level model is the multilinear
interpolation of ``log(time)`` over that grid, so at grid points it *is* the packet model,
and in between it is as close as the grid is fine; ``tests/sim/test_flowmodel.py`` measures
how close on random loads. Points with random loss average two seeds.

Outside the grid: other axes clamp to its ends; objects larger than its largest size add
their extra bytes at the marginal rate of the last size step. That is right for a
throttled flow (steady at the rate) and for a flow limited by its access link, and too
fast for a large transfer on a fast, lossy link, which the grid never saw reach its
loss-limited rate: keep objects within the scenario's own sizes where that matters.

Grids are cached on disk by a hash of everything that defines them (the model version,
the throttle, the axes), so a rerun of a scenario does not recompute them; building uses a
process pool over the machine's cores.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.interpolate import RegularGridInterpolator

from throttle_lab.sim._packet import FlowSpec, Throttle, simulate_flow

__all__ = ["FlowModel", "ThrottleConfig", "default_cache_dir"]

FloatArray = npt.NDArray[np.float64]
MODEL_VERSION = "packet-1"  # bump when the packet model changes what it computes
LOSS_SEEDS = (0, 1)


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    """A throttle as the flow model keys it; ``kind='none'`` is the unthrottled path."""

    kind: str = "none"
    rate_bps: float = 0.0
    burst_bytes: int = 0
    queue_bytes: int = 0

    def throttle(self) -> Throttle | None:
        if self.kind == "none":
            return None
        if self.kind == "police":
            return Throttle("police", self.rate_bps, self.burst_bytes)
        return Throttle("shape", self.rate_bps, self.burst_bytes, self.queue_bytes or 64_000)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "throttle_lab" / "flowmodel"


def _axis(values: FloatArray, points: int, *, log: bool, cap: float = np.inf) -> FloatArray:
    # The central 99 % of the loads set the range; the rest are clamped to its ends.
    lo, hi = (float(q) for q in np.quantile(values, [0.005, 0.995]))
    lo, hi = min(lo, cap), min(hi, cap)
    if hi <= lo * 1.0001 or points == 1:
        return np.array([lo])
    return np.geomspace(lo, hi, points) if log else np.linspace(lo, hi, points)


def _simulate_point(
    args: tuple[ThrottleConfig, str, str, float, float, float, float],
) -> tuple[float, float]:
    config, tls, cc, size, rtt, bandwidth, loss = args
    seeds = LOSS_SEEDS if loss > 0 else (0,)
    totals, ttfbs = [], []
    for seed in seeds:
        spec = FlowSpec(
            size_bytes=max(1, round(size)),
            rtt_s=rtt,
            throttle=config.throttle(),
            cc="reno" if cc == "reno" else "cubic",
            tls="1.2" if tls == "1.2" else "none" if tls == "none" else "1.3",
            bandwidth_bps=bandwidth,
            loss=loss,
            seed=seed,
        )
        result = simulate_flow(spec)
        totals.append(result.total_s)
        ttfbs.append(result.ttfb_s if result.ttfb_s is not None else result.total_s)
    return float(np.mean(totals)), float(np.mean(ttfbs))


@dataclass
class _Table:
    """The grid of one throttle config: log times at the grid points, and lookups."""

    axes: tuple[FloatArray, ...]
    total: RegularGridInterpolator
    ttfb: RegularGridInterpolator
    _coords: tuple[list[float], ...] = ()
    _log_total: list[float] = field(default_factory=list)
    _log_ttfb: list[float] = field(default_factory=list)
    _strides: tuple[int, ...] = ()

    def predict(self, columns: Sequence[FloatArray]) -> tuple[FloatArray, FloatArray]:
        """Other axes clamp to the grid; objects larger than its largest size add their
        extra bytes at the marginal rate of the grid's last size step (a transfer that
        long is in its steady state)."""
        clipped = [np.clip(columns[i], self.axes[i][0], self.axes[i][-1]) for i in range(4)]
        points = np.column_stack([_coordinate(clipped[i], i) for i in range(4)])
        ttfb, total = np.exp(self.ttfb(points)), np.exp(self.total(points))
        sizes = self.axes[0]
        beyond = np.asarray(columns[0]) > sizes[-1]
        if beyond.any() and len(sizes) > 1:
            previous = points[beyond].copy()
            previous[:, 0] = math.log(sizes[-2])
            seconds_per_byte = (total[beyond] - np.exp(self.total(previous))) / (
                sizes[-1] - sizes[-2]
            )
            total[beyond] += (np.asarray(columns[0])[beyond] - sizes[-1]) * seconds_per_byte
        return ttfb, total

    def predict_one(
        self, size: float, rtt: float, bandwidth: float, loss: float
    ) -> tuple[float, float]:
        """One load, in pure Python (a few microseconds): the asyncio engine's path.

        Multilinear in the same coordinates as :meth:`predict`, visiting only the corners
        of axes with more than one point and a weight strictly between 0 and 1.
        """
        offset = 0
        terms = [(0, 1.0)]  # (flat offset from `offset`, weight)
        for i, value in enumerate((size, rtt, bandwidth, loss)):
            coords = self._coords[i]
            if len(coords) == 1:
                continue
            x = math.log(value) if i < 3 else value
            stride = self._strides[i]
            if x <= coords[0]:
                continue
            if x >= coords[-1]:
                offset += (len(coords) - 1) * stride
                continue
            j = bisect.bisect_right(coords, x) - 1
            offset += j * stride
            t = (x - coords[j]) / (coords[j + 1] - coords[j])
            terms = [(o, w * (1.0 - t)) for o, w in terms] + [(o + stride, w * t) for o, w in terms]
        log_total = log_ttfb = 0.0
        for o, w in terms:
            log_total += w * self._log_total[offset + o]
            log_ttfb += w * self._log_ttfb[offset + o]
        sizes = self.axes[0]
        if size > sizes[-1] and len(sizes) > 1:  # as in predict(): the last step's rate
            _, before = self.predict_one(sizes[-2], rtt, bandwidth, loss)
            at_max = math.exp(log_total)
            rate = (at_max - before) / (sizes[-1] - sizes[-2])
            return math.exp(log_ttfb), at_max + (size - sizes[-1]) * rate
        return math.exp(log_ttfb), math.exp(log_total)


def _coordinate(values: FloatArray, axis: int) -> FloatArray:
    """Interpolation runs in log(size, rtt, bandwidth) and linear loss."""
    return np.log(values) if axis < 3 else values


class FlowModel:
    """Predict ``(ttfb_s, total_s)`` for arrays of loads under one throttle config."""

    def __init__(
        self,
        *,
        tls: str = "1.3",
        cc: str = "cubic",
        cache_dir: Path | None = None,
        workers: int | None = None,
        size_points: int = 9,
        rtt_points: int = 5,
        bandwidth_points: int = 5,
    ) -> None:
        self.tls = tls
        self.cc = cc
        self.cache_dir = cache_dir
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self.points = (size_points, rtt_points, bandwidth_points)
        self.simulated_points = 0  # packet-model runs this instance made (not cached)
        self._tables: dict[tuple[ThrottleConfig, tuple[bytes, ...]], _Table] = {}

    def axes(
        self,
        config: ThrottleConfig,
        size: FloatArray,
        rtt: FloatArray,
        bandwidth: FloatArray,
        loss: FloatArray,
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """The grid that covers these loads (see the module docstring)."""
        size_points, rtt_points, bw_points = self.points
        # Behind a throttle, an access link 8x faster than the rate no longer matters.
        cap = np.inf if config.kind == "none" else 8 * config.rate_bps
        bw_axis = _axis(bandwidth, bw_points, log=True, cap=cap)
        losses = np.unique(loss)
        loss_axis = losses if len(losses) <= 3 else np.quantile(loss, [0.0, 0.5, 1.0])
        return (
            _axis(size, size_points, log=True),
            _axis(rtt, rtt_points, log=True),
            bw_axis,
            np.unique(loss_axis),
        )

    def _key(self, config: ThrottleConfig, axes: Sequence[FloatArray]) -> str:
        blob = json.dumps(
            {
                "version": MODEL_VERSION,
                "tls": self.tls,
                "cc": self.cc,
                "config": asdict(config),
                "axes": [a.tolist() for a in axes],
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _build(self, config: ThrottleConfig, axes: Sequence[FloatArray]) -> _Table:
        shape = tuple(len(a) for a in axes)
        cached = None
        path = None
        if self.cache_dir is not None:
            path = self.cache_dir / f"{self._key(config, axes)}.npz"
            if path.exists():
                cached = np.load(path)
        if cached is not None:
            totals, ttfbs = cached["total"], cached["ttfb"]
        else:
            grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))
            jobs = [(config, self.tls, self.cc, *map(float, point)) for point in grid]
            if self.workers > 1 and len(jobs) > 8:
                with ProcessPoolExecutor(self.workers) as pool:
                    results = list(pool.map(_simulate_point, jobs, chunksize=4))
            else:
                results = [_simulate_point(job) for job in jobs]  # type: ignore[arg-type]
            self.simulated_points += len(jobs)
            totals = np.array([r[0] for r in results]).reshape(shape)
            ttfbs = np.array([r[1] for r in results]).reshape(shape)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # parallel builders
                np.savez(tmp, total=totals, ttfb=ttfbs)
                tmp.replace(path)
        log_axes = tuple(_coordinate(a, i) for i, a in enumerate(axes))
        padded = tuple(_pad(a) for a in log_axes)  # the interpolator needs 2 points per axis
        return _Table(
            axes=tuple(axes),
            total=RegularGridInterpolator(padded, _pad_values(np.log(totals), log_axes)),
            ttfb=RegularGridInterpolator(padded, _pad_values(np.log(ttfbs), log_axes)),
            _coords=tuple(a.tolist() for a in log_axes),
            _log_total=np.log(totals).ravel().tolist(),
            _log_ttfb=np.log(ttfbs).ravel().tolist(),
            _strides=tuple(int(np.prod(shape[i + 1 :])) for i in range(len(shape))),
        )

    def table(self, config: ThrottleConfig, reference: Sequence[FloatArray]) -> _Table:
        """The (cached) grid of ``config`` spanning the ``reference`` loads
        (size, rtt, bandwidth, loss arrays)."""
        columns = [np.asarray(v, dtype=float) for v in reference]
        axes = self.axes(config, *columns)
        key = (config, tuple(a.tobytes() for a in axes))
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = self._build(config, axes)
        return table

    def predict(
        self,
        config: ThrottleConfig,
        size: npt.ArrayLike,
        rtt: npt.ArrayLike,
        bandwidth: npt.ArrayLike,
        loss: npt.ArrayLike,
        *,
        reference: Sequence[FloatArray] | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """``(ttfb_s, total_s)`` arrays for these loads under ``config``; the grid spans
        ``reference`` (default: these loads themselves)."""
        columns = [np.asarray(v, dtype=float) for v in (size, rtt, bandwidth, loss)]
        if len(columns[0]) == 0:
            return np.zeros(0), np.zeros(0)
        return self.table(config, reference or columns).predict(columns)


def _pad(axis: FloatArray) -> FloatArray:
    """A one-point axis becomes two nearby points so the interpolator accepts it."""
    return axis if len(axis) > 1 else np.array([axis[0], axis[0] + 1e-9])


def _pad_values(values: FloatArray, axes: Sequence[FloatArray]) -> FloatArray:
    for dim, axis in enumerate(axes):
        if len(axis) == 1:
            values = np.concatenate([values, values], axis=dim)
    return values
