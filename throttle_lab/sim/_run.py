"""Run a scenario with an engine and keep what it produced: records, summary, traces.

``run_scenario`` is what ``throttle-lab run`` and the Python API call. The result holds
the loads table (the record schema), the summary, and, for plots, the packet-level trace
of one sample load per device class.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from throttle_lab import __version__
from throttle_lab.analysis import summarise
from throttle_lab.errors import ScenarioError
from throttle_lab.scenario import Scenario
from throttle_lab.sim import ENGINES
from throttle_lab.sim._flowmodel import MODEL_VERSION, FlowModel, default_cache_dir
from throttle_lab.sim._packet import FlowResult, FlowSpec, Throttle, simulate_flow
from throttle_lab.sim._population import build_population, seed_streams
from throttle_lab.sim._vector import run_vector

__all__ = ["RunResult", "run_scenario"]

Progress = Callable[[str, float], None]


@dataclass
class RunResult:
    """What one run produced. ``loads`` has one row per media load."""

    scenario: Scenario
    seed: int
    engine: str
    loads: pd.DataFrame
    wall_s: float = 0.0
    _summary: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def change_times(self) -> list[tuple[float, str]]:
        return self.scenario.change_times()

    def period_names(self) -> list[str]:
        """``'before 10 Mar'``, ``'10 Mar - 11 Mar'`` ... for the stretches between changes."""
        times = sorted({t for t, _ in self.change_times})
        days = [
            self.scenario.datetime_at(t).strftime("%d %b %H:%M").replace(" 00:00", "")
            for t in times
        ]
        if not days:
            return ["whole run"]
        return [
            f"before {days[0]}",
            *(f"{a} - {b}" for a, b in itertools.pairwise(days)),
            f"from {days[-1]}",
        ]

    @property
    def summary(self) -> dict[str, Any]:
        if self._summary is None:
            body = summarise(
                self.loads, change_times=self.change_times, period_names=self.period_names()
            )
            self._summary = {
                "scenario": {
                    "name": self.scenario.name,
                    "source": self.scenario.source,
                    "start": self.scenario.start.isoformat(),
                    "horizon_s": self.scenario.horizon_s,
                    "subscribers": self.scenario.subscribers,
                    "seed": self.seed,
                    "engine": self.engine,
                    "changes": [
                        {"at_s": t, "at": self.scenario.datetime_at(t).isoformat(), "what": what}
                        for t, what in self.change_times
                    ],
                },
                "software": {"throttle_lab": __version__, "flow_model": MODEL_VERSION},
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                **body,
            }
        return self._summary

    def sample_trace(self, device_class: str) -> FlowResult | None:
        """The packet-level trace of one throttled media load of a class (for plots)."""
        frame = self.loads
        pick = frame[
            (frame["device_class"] == device_class)
            & frame["throttled"]
            & frame["action"].isin(["police", "shape"])
        ]
        media = pick[pick["kind"].isin(["photo", "video_segment"])]
        pick = media if not media.empty else pick  # photos and videos tell the story
        if pick.empty:
            return None
        row = pick.iloc[len(pick) // 2]
        subscriber = int(row["subscriber"])
        population_rng, _ = seed_streams(self.seed)
        population = build_population(self.scenario, population_rng)
        policy = self.scenario.policy_set(self.seed)[str(row["policy"])]
        action = policy.action_at(now=float(row["start_s"]))
        throttle = Throttle.from_action(action)
        return simulate_flow(
            FlowSpec(
                int(row["size_bytes"]),
                float(population.rtt_s[subscriber]),
                throttle,
                bandwidth_bps=float(population.down_bps[subscriber]),
                loss=float(population.loss[subscriber]),
                seed=self.seed,
            )
        )

    def write(self, out: Path) -> list[Path]:
        """``loads.parquet``, ``summary.json`` and the plots (PNG) into ``out``."""
        from throttle_lab.plot import write_run_plots  # plot imports this module

        out.mkdir(parents=True, exist_ok=True)
        loads_path, summary_path = out / "loads.parquet", out / "summary.json"
        self.loads.to_parquet(loads_path, index=False)
        summary_path.write_text(json.dumps(self.summary, indent=2, default=_json_default) + "\n")
        return [loads_path, summary_path, *write_run_plots(self, out)]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    engine: str | None = None,
    model: FlowModel | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Simulate every load of ``scenario`` (seed and engine default to the scenario's)."""
    chosen = engine or scenario.engine
    if chosen == "auto":
        chosen = "vector"
    if chosen not in ENGINES:
        raise ScenarioError(
            f"unknown engine: expected one of {', '.join(ENGINES)}", key="--engine", value=chosen
        )
    run_seed = scenario.seed if seed is None else seed
    flow_model = model or FlowModel(cache_dir=default_cache_dir())
    started = time.perf_counter()
    if chosen == "asyncio":
        from throttle_lab.sim._asyncio import run_asyncio

        if progress is not None:
            progress("asyncio engine in virtual time", 0.1)
        loads = run_asyncio(scenario, seed=run_seed, model=flow_model)
    else:
        loads = run_vector(scenario, seed=run_seed, model=flow_model, progress=progress)
    return RunResult(scenario, run_seed, chosen, loads, wall_s=time.perf_counter() - started)
