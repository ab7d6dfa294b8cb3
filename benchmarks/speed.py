"""Speed: media loads simulated per wall-second, our engines against a SimPy peer.

    pip install simpy                                   # the peer's only extra dependency
    .venv/bin/python benchmarks/speed.py                # the full table, 10-20 minutes
    .venv/bin/python benchmarks/speed.py --quick        # smaller sizes, under a minute
    .venv/bin/python benchmarks/speed.py --save benchmarks/data/speed-latest.txt

What it measures, on the default scenario (about 1,130 loads per subscriber; the load
count is set through ``population.subscribers``):

1. Ratio rounds at ``--ratio-loads`` (1,000,000): the SimPy peer (``_simpy_peer.py``: one
   process per load, the package's flow-level model per load, the vectorised engine's own
   loads), the asyncio engine (default Poisson behaviour: one timer per load, the same
   model) and the vectorised engine, in one process, one after the other, ``--repeats``
   times. Targets: vectorised >= 20x SimPy, asyncio >= 1x SimPy. Each ratio is given on
   wall time and on CPU time (``process_time``): on a shared machine a run can wait for a
   core, which inflates its wall time only; a target counts as met when both ratios meet
   it.
2. Scale: ``--scale-loads`` (10,000,000) loads in one vectorised run in a subprocess:
   wall time and peak RSS (``getrusage(RUSAGE_CHILDREN)``); target within 4 GB.
3. Growth: loads/s at each of ``--sizes``; SimPy and asyncio up to ``--peer-max``.

The flow model's grids are built (or loaded from the cache) in a warm-up run before any
timing, and the table says how many packet-model runs happened during timed runs (0).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _simpy_peer as peer
import numpy as np
import simpy

from throttle_lab.scenario import Scenario, load_scenario
from throttle_lab.sim import FlowModel, default_cache_dir
from throttle_lab.sim._asyncio import run_asyncio
from throttle_lab.sim._decide import ACTION_CODES
from throttle_lab.sim._population import SECONDS_PER_DAY
from throttle_lab.sim._vector import run_vector

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "russia-twitter-2021.toml"
ENGINES = ("simpy", "asyncio", "vector")
VECTOR_TARGET, ASYNCIO_TARGET = 20.0, 1.0  # x SimPy
MEMORY_TARGET_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class Measurement:
    engine: str
    nominal: int  # the load count asked for; the scenario draws about as many
    loads: int
    wall_s: float
    cpu_s: float  # this process's CPU time: less sensitive to other users of the machine

    @property
    def per_s(self) -> float:
        return self.loads / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.loads / self.cpu_s


def timed(work: Callable[[], Any]) -> tuple[Any, float, float]:
    """``work()``, its wall seconds and its CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def log(message: str) -> None:
    """Progress goes to stderr so that stdout carries only the table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loads_per_subscriber(scenario: Scenario) -> float:
    """Expected loads of one subscriber over the horizon (class shares weight media)."""
    shares = {name: spec.share for name, spec in scenario.classes.items()}
    total_share = sum(shares.values())
    days = scenario.horizon_s / SECONDS_PER_DAY
    return sum(
        m.per_subscriber_per_day * days * sum(shares[c] for c in m.classes) / total_share
        for m in scenario.media
    )


class Workloads:
    """The scenario scaled to a number of loads, and the shared (warm) flow model."""

    def __init__(self, path: Path, seed: int | None) -> None:
        self.path = path
        base = load_scenario(path)
        self.seed = base.seed if seed is None else seed
        self.per_subscriber = loads_per_subscriber(base)
        self.model = FlowModel(cache_dir=default_cache_dir())

    def scenario(self, loads: int) -> Scenario:
        subscribers = max(1, round(loads / self.per_subscriber))
        return load_scenario(self.path, overrides=[f"population.subscribers={subscribers}"])

    def warm_up(self) -> int:
        """Build or load every grid the timed runs use; the packet-model runs it took."""
        small = self.scenario(20_000)
        run_vector(small, seed=self.seed, model=self.model)
        run_asyncio(small, seed=self.seed, model=self.model)
        peer.simulate(peer.prepare(small, seed=self.seed, model=self.model))
        return self.model.simulated_points

    def run(self, engine: str, loads: int) -> tuple[Measurement, Any]:
        """Time one engine end to end (the SimPy peer: its simulation only)."""
        scenario = self.scenario(loads)
        gc.collect()
        if engine == "simpy":
            prepared = peer.prepare(scenario, seed=self.seed, model=self.model)
            gc.collect()
            records, wall, cpu = timed(lambda: peer.simulate(prepared))
            measured = Measurement(engine, loads, len(records), wall, cpu)
            return measured, peer.columns(records, len(records))
        engine_run: Callable[..., Any] = run_asyncio if engine == "asyncio" else run_vector
        frame, wall, cpu = timed(lambda: engine_run(scenario, seed=self.seed, model=self.model))
        return Measurement(engine, loads, len(frame), wall, cpu), frame


def agreement(simpy_columns: dict[str, np.ndarray], frame: Any) -> str:
    """How the SimPy peer's answers compare with the vectorised engine's, load by load."""
    action = np.array([ACTION_CODES.index(a) for a in frame["action"].astype(str)])
    same_action = np.mean(action == simpy_columns["action"])
    totals = np.isclose(frame["total_s"].to_numpy(), simpy_columns["total_s"], rtol=1e-9)
    return (
        f"SimPy peer vs vectorised engine on the same {len(action):,} loads: same action "
        f"for {same_action:.2%}, same total time (rtol 1e-9) for {np.mean(totals):.2%} "
        "(the rest overlap another load of the same subscriber and share its access link)"
    )


def ratio_rounds(work: Workloads, loads: int, repeats: int) -> tuple[list[str], list[Measurement]]:
    """The three engines one after the other, ``repeats`` times; ratios within a round."""
    lines = [
        f"1. Same workload, ~{loads:,} loads; all three in this process, one after the other",
        f"{'round':>5}  {'engine':<8} {'loads':>10} {'wall s':>7} {'cpu s':>7} {'loads/s':>8} "
        f"{'x SimPy':>8} {'(cpu)':>6}  target (met only if both ratios meet it)",
    ]
    measured: list[Measurement] = []
    check = ""
    for round_no in range(1, repeats + 1):
        results: dict[str, Measurement] = {}
        outputs: dict[str, Any] = {}
        for engine in ENGINES:
            log(f"round {round_no}: {engine} at ~{loads:,} loads")
            results[engine], output = work.run(engine, loads)
            if engine != "asyncio":  # its loads are its own draw: only SimPy/vector pair up
                outputs[engine] = output
            del output
            log(f"  {results[engine].per_s:,.0f} loads/s")
        check = agreement(outputs["simpy"], outputs["vector"])
        outputs.clear()
        base = results["simpy"]
        for engine in ENGINES:
            m = results[engine]
            ratio, cpu_ratio = m.per_s / base.per_s, m.per_cpu_s / base.per_cpu_s
            target = {"asyncio": ASYNCIO_TARGET, "vector": VECTOR_TARGET}.get(engine)
            verdict = _verdict(min(ratio, cpu_ratio), target)
            lines.append(
                f"{round_no:>5}  {engine:<8} {m.loads:>10,} {m.wall_s:>7.2f} {m.cpu_s:>7.2f} "
                f"{m.per_s:>8,.0f} {ratio:>8.2f} {cpu_ratio:>6.2f}  {verdict}"
            )
        measured.extend(results.values())
    lines.append(check)
    return lines, measured


def _verdict(ratio: float, target: float | None) -> str:
    if target is None:
        return ""
    if ratio >= target:
        return f">= {target:g}x met"
    return f">= {target:g}x MISSED ({ratio / target:.0%} of it)"


def run_child(loads: int, path: Path, seed: int | None) -> None:
    """Inside the scale subprocess: warm up, time one vectorised run, print JSON."""
    work = Workloads(path, seed)
    run_vector(work.scenario(20_000), seed=work.seed, model=work.model)  # load the grids
    warm_points = work.model.simulated_points
    measurement, frame = work.run("vector", loads)
    print(
        json.dumps(
            {
                "loads": measurement.loads,
                "wall_s": measurement.wall_s,
                "cpu_s": measurement.cpu_s,
                "frame_bytes": int(frame.memory_usage(deep=True).sum()),
                "timed_packet_runs": work.model.simulated_points - warm_points,
            }
        )
    )


def scale_run(loads: int, path: Path, seed: int | None) -> tuple[list[str], Measurement]:
    """One vectorised run in a fresh process, so that its peak RSS is its own (it is the
    only child this process waits for before reading RUSAGE_CHILDREN)."""
    log(f"scale: ~{loads:,} loads in a subprocess")
    command = [sys.executable, __file__, "--child-vector", str(loads), "--scenario", str(path)]
    if seed is not None:
        command += ["--seed", str(seed)]
    done, process_s, _ = timed(
        lambda: subprocess.run(command, capture_output=True, text=True, check=False)
    )
    if done.returncode != 0:
        raise SystemExit(f"scale subprocess failed:\n{done.stderr}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
    m = Measurement("vector", loads, int(child["loads"]), child["wall_s"], child["cpu_s"])
    verdict = "met" if peak <= MEMORY_TARGET_BYTES else "MISSED"
    lines = [
        f"2. Scale: one vectorised run in a subprocess (target: peak RSS within "
        f"{MEMORY_TARGET_BYTES / 1024**3:g} GiB)",
        f"{'loads':>11} {'run s':>7} {'cpu s':>7} {'loads/s':>8} {'process s':>10} "
        f"{'peak RSS':>10} {'records':>10}  target",
        f"{m.loads:>11,} {m.wall_s:>7.2f} {m.cpu_s:>7.2f} {m.per_s:>8,.0f} {process_s:>10.1f} "
        f"{peak / 1024**3:>6.2f} GiB {child['frame_bytes'] / 1024**3:>6.2f} GiB  {verdict}",
        "   run s: run_vector alone, grids warm; process s: the whole subprocess (imports,"
        " warm-up); records: the loads table in memory",
    ]
    if child["timed_packet_runs"]:
        lines.append(f"   WARNING: {child['timed_packet_runs']} packet-model runs while timed")
    return lines, m


def growth(
    work: Workloads, sizes: list[int], peer_max: int, known: list[Measurement], repeats: int
) -> list[str]:
    """Loads/s per size, the best of ``repeats`` runs (the machine is shared: the best run
    is the one least disturbed); runs already made at a size (the ratio rounds, the scale
    run) count among them."""
    header = "".join(f"{e:>12}" for e in ENGINES)
    lines = [
        f"3. How cost grows: loads/s, best of {repeats} (wall time; about this many loads)",
        f"{'loads':>11}{header}",
    ]
    for size in sizes:
        cells = []
        for engine in ENGINES:
            if engine != "vector" and size > peer_max:
                cells.append(f"{'-':>12}")
                continue
            runs = [m for m in known if m.engine == engine and m.nominal == size]
            while len(runs) < (repeats if size <= peer_max else 1):
                log(f"growth: {engine} at ~{size:,} loads")
                runs.append(work.run(engine, size)[0])
            cells.append(f"{max(m.per_s for m in runs):>12,.0f}")
        lines.append(f"{size:>11,}" + "".join(cells))
    lines.append(
        "   vectorised rows above the SimPy/asyncio sizes are single runs (the largest is the"
        " scale subprocess)"
    )
    return lines


def machine_line() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, numpy {np.__version__}, simpy {simpy.__version__}; "
        f"load average (1, 5, 15 min) {load}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    parser.add_argument("--seed", type=int, default=None, help="default: the scenario's")
    parser.add_argument("--ratio-loads", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2, help="ratio rounds; growth best-of")
    parser.add_argument("--scale-loads", type=int, default=10_000_000)
    parser.add_argument(
        "--sizes", default="10000,100000,1000000,10000000", help="growth rows (comma-separated)"
    )
    parser.add_argument("--peer-max", type=int, default=1_000_000, help="largest SimPy/asyncio row")
    parser.add_argument("--max-loads", type=int, default=None, help="cap every size at this")
    parser.add_argument("--quick", action="store_true", help="10^5 ratio, 10^6 scale: < 1 min")
    parser.add_argument("--save", type=Path, default=None, help="also write the table here")
    parser.add_argument("--child-vector", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.ratio_loads, args.repeats, args.scale_loads = 100_000, 1, 1_000_000
        args.sizes, args.peer_max = "10000,100000,1000000", 100_000
    cap = args.max_loads or max(args.ratio_loads, args.scale_loads, 1)
    args.size_list = sorted({min(int(s), cap) for s in args.sizes.split(",") if s.strip()})
    args.ratio_loads, args.scale_loads = min(args.ratio_loads, cap), min(args.scale_loads, cap)
    args.peer_max = min(args.peer_max, cap)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_vector is not None:
        run_child(args.child_vector, args.scenario, args.seed)
        return 0
    started = time.perf_counter()
    work = Workloads(args.scenario, args.seed)
    lines = [
        f"throttle_lab speed benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine at start: {machine_line()}",
        f"scenario: {args.scenario.name}, seed {work.seed}, "
        f"{work.per_subscriber:,.0f} loads per subscriber (count set by population.subscribers)",
    ]
    log("warm-up: building or loading the flow-model grids")
    warm_points = work.warm_up()
    lines.append(
        f"flow model: grids warmed up before timing ({warm_points} packet-model runs in the "
        "warm-up; timed runs use the same in-memory grids)"
    )
    section, measured = ratio_rounds(work, args.ratio_loads, args.repeats)
    lines += ["", *section]
    scale_lines, scale = scale_run(args.scale_loads, args.scenario, args.seed)
    lines += ["", *scale_lines]
    measured.append(scale)
    lines += [
        "",
        *growth(work, args.size_list, args.peer_max, measured, args.repeats),
    ]
    if work.model.simulated_points != warm_points:
        lines.append(
            f"WARNING: {work.model.simulated_points - warm_points} packet-model runs while timed"
        )
    lines += ["", f"machine at end: {machine_line()}; total {time.perf_counter() - started:.0f} s"]
    table = "\n".join(lines)
    print(table)
    if args.save is not None:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
