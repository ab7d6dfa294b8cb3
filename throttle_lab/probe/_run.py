"""A whole probe run: measure (once, or on a schedule with ``--watch``), judge, report.

:func:`run_probe` is what the ``probe`` command calls and what a notebook can call. The
output directory holds ``measurements.jsonl`` (appended as loads finish),
``summary.json``, ``report.md`` and ``plots/``. A directory that already holds
measurements is continued only when ``resume=True``, so a second run never mixes its
loads into the first by accident.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from throttle_lab.errors import ProbeError
from throttle_lab.probe._measure import FetchSettings
from throttle_lab.probe._report import write_outputs
from throttle_lab.probe._schedule import Prober
from throttle_lab.probe._store import MeasurementLog, RunInfo, read_measurements
from throttle_lab.probe._targets import TargetsFile
from throttle_lab.probe._verdict import TargetVerdict, Thresholds
from throttle_lab.records import LoadRecord

__all__ = ["ProbeRequest", "run_probe"]

MEASUREMENTS = "measurements.jsonl"


@dataclass(frozen=True)
class ProbeRequest:
    """Everything a run needs; the command line builds one from its flags."""

    targets: TargetsFile
    settings: FetchSettings
    out_dir: Path
    source: str = "command line"
    resume: bool = False
    seed: int = 0
    watch_interval_s: float | None = None  # repeat the probe every this long...
    watch_for_s: float | None = None  # ...for this long (from the run's start)
    thresholds: Thresholds = field(default_factory=Thresholds)


def _epoch_of(record: LoadRecord) -> int:
    return int(record.extra.get("epoch", 0))


def _timeline(prober: Prober, records: list[LoadRecord]) -> list[dict[str, Any]]:
    """Each epoch's verdicts, with when the epoch began (seconds since the run began)."""
    points = []
    for epoch in sorted({_epoch_of(r) for r in records}):
        began = min(r.start_s for r in records if _epoch_of(r) == epoch)
        for name, verdict in prober.verdicts(epoch).items():
            main = verdict.main
            points.append(
                {
                    "epoch": epoch,
                    "elapsed_s": round(began, 3),
                    "target": name,
                    "verdict": main.verdict,
                    "slowdown": main.slowdown,
                    "slowdown_ci": list(main.slowdown_ci) if main.slowdown_ci else None,
                }
            )
    return points


async def run_probe(
    request: ProbeRequest,
    *,
    on_record: Callable[[LoadRecord], None] | None = None,
    on_planned: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run the probe; return the summary (also written to ``summary.json``)."""
    out_dir = request.out_dir
    path = out_dir / MEASUREMENTS
    records: list[LoadRecord] = []
    skipped = 0
    run: RunInfo | None = None
    if path.exists() and path.stat().st_size > 0:
        if not request.resume:
            raise ProbeError(
                f"{out_dir} already holds measurements: pass --resume to continue that run,"
                " or choose another --out"
            )
        records, run, skipped = read_measurements(path)
    if run is None:
        run = RunInfo.new(network=request.settings.network)
    # Loads are timed on perf_counter; anchor it to the run's wall-clock start so that
    # start_s stays "seconds since the run began" across a resume.
    run_started = time.perf_counter() - (time.time() - run.test_start_time.timestamp())
    log = MeasurementLog(path, run)
    prober = Prober(
        request.targets.targets,
        request.targets.probe,
        request.settings,
        log,
        records=records,
        seed=request.seed,
        thresholds=request.thresholds,
        on_record=on_record,
        on_planned=on_planned,
        run_started=run_started,
    )
    try:
        if request.watch_interval_s is None:
            await prober.run_epoch(0)
        else:
            await _watch(prober, request, run_started)
    finally:
        log.close()
    all_records = prober.records
    verdicts: dict[str, TargetVerdict] = prober.verdicts(
        None if request.watch_interval_s is not None else 0
    )
    return write_outputs(
        out_dir,
        targets=request.targets.targets,
        verdicts=verdicts,
        records=all_records,
        run=run,
        options=request.targets.probe,
        source=request.source,
        timeline=_timeline(prober, all_records) if request.watch_interval_s is not None else (),
        skipped_lines=skipped,
    )


async def _watch(prober: Prober, request: ProbeRequest, run_started: float) -> None:
    """Repeat the probe every ``watch_interval_s`` until ``watch_for_s`` has passed."""
    interval = request.watch_interval_s or 0.0
    duration = request.watch_for_s if request.watch_for_s is not None else interval
    epoch = max((_epoch_of(r) for r in prober.records), default=0)
    while True:
        await prober.run_epoch(epoch)
        next_start = (epoch + 1) * interval
        if next_start >= duration:
            return
        epoch += 1
        await asyncio.sleep(max(0.0, next_start - (time.perf_counter() - run_started)))
