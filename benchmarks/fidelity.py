"""Fidelity: real Linux TCP through a real policer/shaper versus the packet model.

Root only (it builds network namespaces); without root it prints one line and exits 0,
except ``--compare-only``, which needs no privileges.

The grid: rate 128 kbit/s and 1 mbit/s; bucket 4, 16 and 64 KB (1000-based); RTT 20,
100 and 300 ms; object 50 KB, 250 KB and 1 MB; police and shape (tbf with burst = the
bucket and a 64 KB queue); CUBIC; 108 points. Each point gets its own testbed (its own
three namespaces) and three transfers through a freshly reset middlebox; the median
completion time is compared with ``throttle-lab flow ... --tls none --cc cubic --json``.

Measuring takes hours at 128 kbit/s, so points run concurrently (``--workers``), and
each measured point is written to ``benchmarks/data/fidelity-testbed.json`` as soon as
it is done: an interrupted run loses nothing, a rerun measures only what is missing
(``--remeasure`` measures again), and ``--compare-only`` rebuilds the table from that
file and the current model in seconds.

    sudo .venv/bin/python benchmarks/fidelity.py              # measure what is missing, compare
    .venv/bin/python benchmarks/fidelity.py --compare-only   # table from the cache
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from throttle_lab.units import format_rate, format_size

CACHE = Path(__file__).resolve().parent / "data" / "fidelity-testbed.json"
RATES_BPS = (128e3, 1e6)
BURSTS_BYTES = (4_000, 16_000, 64_000)
RTTS_S = (0.020, 0.100, 0.300)
SIZES_BYTES = (50_000, 250_000, 1_000_000)
MODES = ("police", "shape")
SHAPER_QUEUE_BYTES = 64_000
REPEATS = 3
SCHEMA = 1
TARGET_MEDIAN_ERROR = 0.10
TARGET_P90_ERROR = 0.25


@dataclass(frozen=True)
class GridPoint:
    mode: str
    rate_bps: float
    burst_bytes: int
    rtt_s: float
    size_bytes: int
    queue_bytes: int | None

    @property
    def key(self) -> str:
        return (
            f"{self.mode}-{format_rate(self.rate_bps)}-b{format_size(self.burst_bytes)}"
            f"-rtt{self.rtt_s * 1e3:g}ms-{format_size(self.size_bytes)}"
        )

    def ideal_s(self) -> float:
        """The transfer time at exactly the rate, for ordering and timeouts."""
        return self.size_bytes * 8 / self.rate_bps


def grid() -> list[GridPoint]:
    return [
        GridPoint(mode, rate, burst, rtt, size, SHAPER_QUEUE_BYTES if mode == "shape" else None)
        for mode in MODES
        for rate in RATES_BPS
        for burst in BURSTS_BYTES
        for rtt in RTTS_S
        for size in SIZES_BYTES
    ]


class Cache:
    """The measured points, rewritten atomically after each one (threads share it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path.exists():
            self.data: dict[str, Any] = json.loads(path.read_text())
        else:
            self.data = {"schema": SCHEMA, "points": {}}
        self.data["about"] = (
            "Real Linux TCP (CUBIC, MSS 1448, offloads off) through the throttle_lab kernel "
            "testbed: a userspace relay adds RTT/2 each way; 'police' drops server->client "
            "IPv4 packets at arrival with a token bucket counting IP length; 'shape' is tbf "
            "(stab overhead -14: IP length) on the middlebox veth toward the client. "
            "Written by benchmarks/fidelity.py; total_s runs from just before connect() to "
            "the last byte; goodput_bps = size*8/total_s."
        )

    def points(self) -> dict[str, Any]:
        return dict(self.data["points"])

    def store(self, key: str, record: dict[str, Any]) -> None:
        with self._lock:
            self.data["points"][key] = record
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".json.tmp")
            temporary.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")
            os.replace(temporary, self.path)


def _run_summary(result: Any) -> dict[str, Any]:
    relay = result.relay
    return {
        "outcome": result.outcome,
        "total_s": result.total_s,
        "ttfb_s": result.ttfb_s,
        "goodput_bps": result.goodput_bps,
        "received_bytes": result.received_bytes,
        "retransmits": result.retransmits,
        "data_segments_sent": result.data_segments_sent,
        "relay_dropped_frames": result.relay_dropped_frames,
        "shaper_drops": result.shaper_drops,
        "kernel_drops": result.kernel_drops,
        "relay_lateness_max_s": result.relay_lateness_max_s,
        "relay_lateness_mean_s": max(relay[d]["lateness_mean_s"] for d in ("c2s", "s2c")),
        "relay_realtime": relay.get("realtime"),
        "server_min_rtt_s": result.server.get("min_rtt_s"),
        "server_congestion_control": result.server.get("congestion_control"),
        "server_snd_mss": result.server.get("snd_mss"),
    }


def measure_point(point: GridPoint, repeats: int, stop: threading.Event) -> dict[str, Any]:
    from throttle_lab.emu.testbed import HookSpec, ShaperSpec, TestbedConfig, open_testbed

    if point.mode == "police":
        config = TestbedConfig(
            rtt_s=point.rtt_s, hook=HookSpec.policer(point.rate_bps, point.burst_bytes)
        )
    else:
        assert point.queue_bytes is not None
        shaper = ShaperSpec(point.rate_bps, point.burst_bytes, point.queue_bytes)
        config = TestbedConfig(rtt_s=point.rtt_s, shaper=shaper)
    timeout_s = 15 * point.ideal_s() + 60 * point.rtt_s + 30
    started = time.monotonic()
    runs = []
    with open_testbed(config) as testbed:
        for _ in range(repeats):
            if stop.is_set():
                raise KeyboardInterrupt
            runs.append(_run_summary(testbed.fetch(point.size_bytes, timeout_s=timeout_s)))
    totals = [run["total_s"] for run in runs if run["outcome"] == "ok"]
    return {
        "point": asdict(point),
        "runs": runs,
        "complete": len(totals) == repeats,
        "median_total_s": statistics.median(totals) if len(totals) == repeats else None,
        "wall_s": time.monotonic() - started,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
    }


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def measure(points: list[GridPoint], cache: Cache, *, workers: int, repeats: int) -> None:
    from throttle_lab.emu.testbed import cleanup_stale, close_all

    removed = cleanup_stale()
    if removed:
        print(f"removed {len(removed)} stale namespaces of dead runs", flush=True)
    # Longest first, so that the slow 128 kbit/s points do not all end up at the tail.
    points = sorted(points, key=lambda p: p.ideal_s() + 10 * p.rtt_s, reverse=True)
    stop = threading.Event()
    started = time.monotonic()
    print(f"measuring {len(points)} points, {workers} at a time", flush=True)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    executor = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {executor.submit(measure_point, p, repeats, stop): p for p in points}
        for done, future in enumerate(as_completed(futures), start=1):
            point = futures[future]
            try:
                record = future.result()
            except Exception as exc:  # one broken point must not end the grid
                print(f"[{done}/{len(points)}] {point.key}: FAILED: {exc}", flush=True)
                continue
            cache.store(point.key, record)
            totals = " ".join(
                f"{r['total_s']:.2f}" if r["total_s"] else r["outcome"] for r in record["runs"]
            )
            drops = [r["relay_dropped_frames"] + (r["shaper_drops"] or 0) for r in record["runs"]]
            late = max(r["relay_lateness_max_s"] for r in record["runs"])
            print(
                f"[{done}/{len(points)}] {point.key}: total_s {totals}; drops {drops}; "
                f"relay late max {late * 1e3:.2f} ms; wall {record['wall_s']:.0f} s; "
                f"elapsed {time.monotonic() - started:.0f} s",
                flush=True,
            )
    except (KeyboardInterrupt, SystemExit):
        print("interrupted: closing testbeds; measured points are kept", flush=True)
        stop.set()
        close_all()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    print(f"measured in {time.monotonic() - started:.0f} s", flush=True)


def model_argv(point: GridPoint) -> list[str]:
    """The model's command for ``point`` (``throttle-lab flow``, plain TCP, CUBIC)."""
    rate, burst = format_rate(point.rate_bps), format_size(point.burst_bytes)
    if point.mode == "police":
        action = ["--police", rate, "--burst", burst]
    else:
        assert point.queue_bytes is not None
        action = ["--shape", rate, "--burst", burst, "--queue", format_size(point.queue_bytes)]
    return [
        *(sys.executable, "-m", "throttle_lab", "flow", "--size", format_size(point.size_bytes)),
        *("--rtt", f"{point.rtt_s * 1e3:g}ms", *action, "--tls", "none", "--cc", "cubic", "--json"),
    ]


def run_model(point: GridPoint) -> dict[str, Any] | str:
    """The model's JSON for ``point``, or one line saying why there is none."""
    argv = model_argv(point)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        return "the model took over 600 s"
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit status {done.returncode}"
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        return f"not JSON: {done.stdout[:80]!r}"
    return answer if isinstance(answer, dict) else f"not a JSON object: {done.stdout[:80]!r}"


def compare_and_print(points: list[GridPoint], measured: dict[str, Any]) -> int:
    """The table and the error summary; 0 when the targets hold, 1 when not, 2 when no model."""
    rows = [(p, measured[p.key]) for p in points if measured.get(p.key, {}).get("complete")]
    transfers = "/".join(str(n) for n in sorted({len(record["runs"]) for _, record in rows}))
    print(f"\n{len(rows)} of {len(points)} points measured ({transfers} transfers each)")
    if not rows:
        return 2
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        models = list(pool.map(run_model, [p for p, _ in rows]))
    model_missing = all(isinstance(m, str) for m in models)
    if model_missing:
        print(f"MODEL NOT AVAILABLE: `{' '.join(model_argv(rows[0][0])[2:])}` said: {models[0]}")
        print("showing the testbed measurements only; rerun with --compare-only once it exists")
    print(f"{'point':42} {'testbed s':>10} {'runs s':>26} {'model s':>9} {'rel err':>8}")
    errors: dict[str, float] = {}
    for (point, record), model in zip(rows, models, strict=True):
        testbed_s = record["median_total_s"]
        runs = " ".join(f"{r['total_s']:.2f}" for r in record["runs"])
        if isinstance(model, str):
            model_text, error_text = "-", "-"
            if not model_missing:
                model_text = "error"
                print(f"  model failed for {point.key}: {model}")
        else:
            model_s = float(model["total_s"])
            errors[point.key] = (model_s - testbed_s) / testbed_s
            model_text, error_text = f"{model_s:.2f}", f"{errors[point.key]:+.1%}"
        print(f"{point.key:42} {testbed_s:10.2f} {runs:>26} {model_text:>9} {error_text:>8}")
    _print_relay_health(rows)
    if model_missing:
        return 2
    absolute = np.abs(np.array(list(errors.values())))
    median_error, p90_error = float(np.median(absolute)), float(np.percentile(absolute, 90))
    for mode in MODES:
        for rate in RATES_BPS:
            group = [
                abs(e) for k, e in errors.items() if k.startswith(f"{mode}-{format_rate(rate)}-")
            ]
            if group:
                label = f"{mode} {format_rate(rate)}"
                print(f"  {label}: median |error| {np.median(group):.1%} (n={len(group)})")
    passed = median_error <= TARGET_MEDIAN_ERROR and p90_error <= TARGET_P90_ERROR
    print(
        f"completion time |relative error| over {len(errors)} points: median {median_error:.1%} "
        f"(target <= {TARGET_MEDIAN_ERROR:.0%}), p90 {p90_error:.1%} "
        f"(target <= {TARGET_P90_ERROR:.0%}): {'PASS' if passed else 'FAIL'}"
    )
    return 0 if passed else 1


def _print_relay_health(rows: list[tuple[GridPoint, dict[str, Any]]]) -> None:
    """Evidence that the testbed, not only the model, did its job."""
    runs = [run for _, record in rows for run in record["runs"]]
    kernel_drops = sum(run["kernel_drops"] for run in runs)
    worst_mean = max(run["relay_lateness_mean_s"] for run in runs)
    worst_max = max(run["relay_lateness_max_s"] for run in runs)
    print(
        f"relay health over {len(runs)} transfers: kernel drops {kernel_drops} (want 0), "
        f"worst mean lateness {worst_mean * 1e3:.3f} ms, "
        f"worst single frame {worst_max * 1e3:.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare-only", action="store_true", help="no measuring")
    parser.add_argument("--remeasure", action="store_true", help="measure cached points again")
    parser.add_argument("--workers", type=int, default=6, help="testbeds at a time")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--only", default="", help="only points whose key contains this")
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args(argv)

    cache = Cache(args.cache)
    points = [p for p in grid() if args.only in p.key]
    if not args.compare_only:
        if os.geteuid() != 0 or not sys.platform.startswith("linux"):
            print("fidelity: skipped: measuring needs root on Linux (try --compare-only)")
            return 0
        cached = cache.points()
        missing = [p for p in points if args.remeasure or not cached.get(p.key, {}).get("complete")]
        if missing:
            measure(missing, cache, workers=args.workers, repeats=args.repeats)
    return compare_and_print(points, cache.points())


if __name__ == "__main__":
    sys.exit(main())
