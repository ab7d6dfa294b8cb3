"""Sweeps: a 100-point sweep serially, on local processes and on a Dask LocalCluster.

    .venv/bin/python benchmarks/sweep.py                 # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/sweep.py --points 20     # a smoke run
    .venv/bin/python benchmarks/sweep.py --save benchmarks/data/sweep-latest.txt

The points: the default scenario at ``--subscribers`` (20: about 22,000 loads a point),
a grid of 10 population sizes x 10 fixed-line coverage fractions, every point with the
scenario's seed (``same_seed``), so that every point uses the same flow-model grids; they
are built once before any timing, so each point is the simulation and its summary, not
a calibration. Three executors, each with ``--workers`` processes where it has workers:
``serial`` (this process), ``processes`` (``concurrent.futures.ProcessPoolExecutor``,
forked from this process) and ``dask`` (a ``LocalCluster`` on loopback, workers spawned).

Two runs per executor:

1. **empty points**: ``--points`` points whose scenario fails validation at once, so a
   point costs its trip (pickling the scenario, scheduling, the record back) and nothing
   else. With the executor's start-up (opening it and the first task in every worker:
   spawned Dask workers import numpy, pandas and the package then) this gives
   ``startup_s`` and the overhead per point ``overhead_s``;
2. **real points**: the sweep itself, wall time from opening the executor to the table.

Break-even: with W seconds of work a point, P workers, start-up S and o the wall time of
an empty point, N points take N*W serially and about S + N*W/P + N*o in parallel.
Parallel wins when N > S / (W*(1 - 1/P) - o); the table gives that N for this
scenario's W, and the smallest W at which 100 points pay.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

import throttle_lab as tl
from throttle_lab._api import scenario_document
from throttle_lab._sweep import PointTask, open_executor, run_point

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "russia-twitter-2021.toml"


def grid(points: int) -> dict[str, list[Any]]:
    """``points`` combinations (10 x points/10) that share one set of flow-model grids."""
    sizes = max(1, points // 10)
    return {
        "population.subscribers": [15 + i for i in range(sizes)],
        "policies[0].coverage.fixed.fraction": [round(0.1 * i, 1) for i in range(10)],
    }


def empty_points(
    executor: concurrent.futures.Executor, count: int, document: dict[str, Any]
) -> float:
    """Wall time of ``count`` points that fail validation at once (the trip alone)."""
    tasks = [
        PointTask(f"empty{i}", "bench", document, ("population.subscribers=-1",), 0, None)
        for i in range(count)
    ]
    started = time.perf_counter()
    futures = [executor.submit(run_point, task) for task in tasks]
    records = [f.result() for f in concurrent.futures.as_completed(futures)]
    assert all(r["status"] == "error" for r in records)
    return time.perf_counter() - started


def _warm(module_names: list[str]) -> None:
    """Import what a point needs (run in every worker before timing the trip)."""
    for name in module_names:
        __import__(name)


_NEEDED = ["throttle_lab.scenario", "throttle_lab.sim._run", "throttle_lab._sweep._point"]


def measure(
    name: str, args: argparse.Namespace, cache: Path, document: dict[str, Any]
) -> dict[str, Any]:
    scheduler = {"serial": "serial", "processes": "processes", "dask": "local"}[name]
    opened = time.perf_counter()
    with open_executor(scheduler, workers=args.workers) as executor:
        # Start-up: the executor open and every worker ready to run a point (imports
        # done; spawned Dask workers start from nothing, forked processes inherit ours).
        if name == "dask":
            from dask.distributed import default_client

            default_client().run(_warm, _NEEDED)
        else:
            for future in [executor.submit(_warm, _NEEDED) for _ in range(args.workers)]:
                future.result()
        startup_s = time.perf_counter() - opened
        empty_s = empty_points(executor, args.points, document)
        started = time.perf_counter()
        result = tl.sweep(
            SCENARIO,
            grid(args.points),
            scheduler=executor,
            same_seed=True,
            model_options={"cache_dir": cache},
            progress=False,
        )
        points_s = time.perf_counter() - started
    assert (result.table["status"] == "ok").all(), result.failed
    return {
        "startup_s": startup_s,
        "overhead_s": empty_s / args.points,
        "points_s": points_s,
        "wall_s": startup_s + points_s,
        "table": result.table.drop(columns=["wall_s", "cached"]),
    }


def _same(a: Any, b: Any) -> str:
    try:
        pd.testing.assert_frame_equal(a, b)
    except AssertionError as error:
        return str(error).splitlines()[0]
    return "identical"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--save", type=Path, help="Also write the table to this file.")
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    base = tl.load(SCENARIO, f"population.subscribers={args.subscribers}")
    document = scenario_document(base)
    # Build the flow-model grids once (not timed): every point then shares them.
    tl.sweep(SCENARIO, {"population.subscribers": [args.subscribers]}, scheduler="serial",
             same_seed=True, model_options={"cache_dir": cache}, progress=False)  # fmt: skip
    rows = {name: measure(name, args, cache, document) for name in ("serial", "processes", "dask")}
    serial_table = rows["serial"].pop("table")
    same = {n: _same(rows[n].pop("table"), serial_table) for n in ("processes", "dask")}
    work = rows["serial"]["points_s"] / args.points
    p = args.workers
    lines = [
        f"sweep benchmark: {args.points} points of the default scenario"
        f" (15-{14 + args.points // 10} subscribers,"
        f" ~{int(serial_table['loads'].mean()):,} loads a point); {p} workers on"
        f" {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end;"
        f" W = {work:.3f} s of work a point (serial)",
        "",
        f"{'executor':<10} {'startup s':>9} {'points s':>9} {'s/point':>8} {'total s':>8}"
        f" {'speedup':>8} {'empty pt s':>10} {'break-even N':>13}",
    ]
    for name, row in rows.items():
        speedup = rows["serial"]["wall_s"] / row["wall_s"]
        if name == "serial":
            even = "-"
        else:
            gain = work * (1 - 1 / p) - row["overhead_s"]
            even = f"{math.ceil(row['startup_s'] / gain)}" if gain > 0 else "never"
        lines.append(
            f"{name:<10} {row['startup_s']:>9.2f} {row['points_s']:>9.1f}"
            f" {row['points_s'] / args.points:>8.3f} {row['wall_s']:>8.1f} {speedup:>7.2f}x"
            f" {row['overhead_s']:>10.4f} {even:>13}"
        )
    lines.append("")
    for name in ("processes", "dask"):
        row = rows[name]
        # N points pay when N*W > S + N*W/P + N*o, i.e. W > (S/N + o) / (1 - 1/P).
        share = 1 - 1 / p
        least = (row["startup_s"] / args.points + row["overhead_s"]) / share if p > 1 else math.inf
        lines.append(f"{name}: {args.points} points pay off from W = {least:.3f} s of work a point")
    lines.append(f"tables against serial: {same}")
    text = "\n".join(lines)
    print(text)
    if args.save:
        args.save.write_text(text + "\n")


if __name__ == "__main__":
    main()
