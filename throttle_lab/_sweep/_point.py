"""One sweep point: the task sent to a worker, the function it runs, and the point cache.

A :class:`PointTask` carries everything a worker needs (the scenario document, not a
path, so a worker on another machine needs the package but not the file) and is
picklable. :func:`run_point` never raises: a failing point comes back as a record with
``status='error'`` and the error's first line, so one bad combination does not end a
sweep.

The cache: a finished point is a JSON file named by its key, the hash of everything that
decides its numbers: the scenario document after the point's overrides (so comments and
key order do not matter, and an override of one key by another is resolved), the seed,
the engine, the flow-model options and the software versions. A rerun with the same
``--out`` skips every point whose file is there. Failed points are not cached: a rerun
tries them again (the error may have been the machine's, not the point's).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PointCache", "PointTask", "metric_names", "point_key", "point_metrics", "run_point"]

# The summary statistics a sweep keeps, overall and per device class.
_STATISTICS = (
    "median_s",
    "p90_s",
    "share_over_10s",
    "counterfactual_median_s",
    "slowdown_median",
    "slowdown_of_throttled_median",
)


@dataclass(frozen=True, slots=True)
class PointTask:
    """What a worker needs to run one point (picklable, self-contained)."""

    key: str
    source: str
    document: dict[str, Any]  # the base scenario document, before the point's overrides
    overrides: tuple[str, ...]
    seed: int
    engine: str | None
    model_options: tuple[tuple[str, Any], ...] = ()


def point_key(
    resolved_document: dict[str, Any],
    *,
    seed: int,
    engine: str | None,
    model_options: tuple[tuple[str, Any], ...],
) -> str:
    """The cache key of a point (see the module docstring)."""
    from throttle_lab import __version__
    from throttle_lab.sim._flowmodel import MODEL_VERSION

    options = {k: v for k, v in model_options if k not in ("cache_dir", "workers")}
    blob = json.dumps(
        {
            "scenario": resolved_document,
            "seed": seed,
            "engine": engine,
            "model": options,
            "throttle_lab": __version__,
            "flow_model": MODEL_VERSION,
        },
        sort_keys=True,
        default=str,  # dates and times of the TOML document
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def metric_names(class_names: Iterable[str]) -> list[str]:
    """The metric columns a scenario with these device classes gives, in table order."""
    names = ["loads", "throttled_share", *_STATISTICS]
    return names + [f"{c}.{name}" for c in class_names for name in names]


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def point_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Flat metrics from a run's summary: ``loads``, ``throttled_share`` and the
    statistics overall (``median_s``, ``slowdown_median`` ...) and per device class
    (``mobile.median_s`` ...). Missing ones (no counterfactual, nothing throttled) are NaN."""
    metrics: dict[str, float] = {}
    groups = [("", summary["overall"])]
    groups += [(f"{row['device_class']}.", row) for row in summary["by_class"]]
    for prefix, stats in groups:
        loads = stats.get("loads", 0)
        metrics[f"{prefix}loads"] = float(loads)
        metrics[f"{prefix}throttled_share"] = (
            stats["throttled_loads"] / loads if loads else math.nan
        )
        for name in _STATISTICS:
            metrics[f"{prefix}{name}"] = _number(stats.get(name))
    return metrics


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_point(task: PointTask) -> dict[str, Any]:
    """Run one point and return its record; errors become ``status='error'`` records."""
    started = time.perf_counter()
    record: dict[str, Any] = {"key": task.key, "seed": task.seed, "overrides": list(task.overrides)}
    try:
        from throttle_lab.scenario import Scenario
        from throttle_lab.sim import FlowModel, default_cache_dir, run_scenario

        scenario = Scenario.from_dict(task.document, source=task.source, overrides=task.overrides)
        options = dict(task.model_options)
        cache_dir = options.pop("cache_dir", None)
        # One process per point already fills the cores: the model must not fork its own
        # pool (and cannot, inside a daemonic dask worker).
        options.setdefault("workers", 1)
        model = FlowModel(
            cache_dir=Path(cache_dir) if cache_dir else default_cache_dir(), **options
        )
        result = run_scenario(scenario, seed=task.seed, engine=task.engine, model=model)
        record.update(status="ok", error="", metrics=point_metrics(result.summary))
    except Exception as error:  # a failing point is a record, not the end of the sweep
        record.update(status="error", error=_first_line(error), metrics={})
    record["wall_s"] = time.perf_counter() - started
    return record


class PointCache:
    """Finished points as ``DIR/<key>.json`` (written whole, so never half-read)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.directory / f"{key}.json"
        try:
            record: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # absent, or unreadable: run the point again
        return record if record.get("status") == "ok" else None

    def put(self, record: dict[str, Any]) -> None:
        if record.get("status") != "ok":
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{record['key']}.json"
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record, allow_nan=True) + "\n")
        temporary.replace(path)
