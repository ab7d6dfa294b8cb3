"""The vectorised engine: a whole scenario as numpy columns, one pass per step.

Draw the population and its loads, decide every load with the policy set, and look up
each load's latency in the flow-level model twice: under its action, and with no policy
(the counterfactual: the same subscriber, request and seed). Each load is one new
connection, and loads of one subscriber do not share the access link (the asyncio engine
models sharing). Blocked loads: a RESET ends after one round trip with ``reset``; a
BLACKHOLE ends when the client gives up (``BLACKHOLE_TIMEOUT_S``) with ``timeout``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from throttle_lab.scenario import Scenario
from throttle_lab.sim._decide import ACTION_CODES, LoadDecisions, decide_loads
from throttle_lab.sim._flowmodel import FlowModel, ThrottleConfig
from throttle_lab.sim._frame import records_frame
from throttle_lab.sim._population import (
    Loads,
    Population,
    build_loads,
    build_population,
    reference_sample,
    seed_streams,
)

__all__ = ["BLACKHOLE_TIMEOUT_S", "run_vector"]

BLACKHOLE_TIMEOUT_S = 30.0  # how long a browser waits on a silent connection before giving up
Progress = Callable[[str, float], None]


def _latencies(
    model: FlowModel,
    reference: tuple[np.ndarray, ...],
    population: Population,
    loads: Loads,
    decisions: LoadDecisions,
    progress: Progress,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ttfb and total under the decided action, and the no-policy total, per load."""
    rows = loads.subscriber.astype(np.intp)
    size = loads.size_bytes.astype(float)
    rtt, down, loss = population.rtt_s[rows], population.down_bps[rows], population.loss[rows]
    ttfb = np.full(len(loads), np.nan)
    total = np.full(len(loads), np.nan)
    progress("counterfactual (no policy)", 0.3)
    cf_ttfb, cf_total = model.predict(ThrottleConfig(), size, rtt, down, loss, reference=reference)
    untouched = decisions.action == ACTION_CODES.index("none")
    ttfb[untouched], total[untouched] = cf_ttfb[untouched], cf_total[untouched]
    assert decisions.config is not None
    for index, config in enumerate(decisions.configs):
        progress(
            f"{config.kind} at {config.rate_bps:g} bit/s",
            0.4 + 0.4 * index / len(decisions.configs),
        )
        mask = decisions.config == index
        ttfb[mask], total[mask] = model.predict(
            config, size[mask], rtt[mask], down[mask], loss[mask], reference=reference
        )
    reset = decisions.action == ACTION_CODES.index("reset")
    total[reset] = rtt[reset]
    blackhole = decisions.action == ACTION_CODES.index("blackhole")
    total[blackhole] = BLACKHOLE_TIMEOUT_S
    return ttfb, total, cf_total


def run_vector(
    scenario: Scenario,
    *,
    seed: int,
    model: FlowModel,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Every load of the scenario as one row of the record schema (plus ``media``)."""
    report = progress or (lambda _what, _fraction: None)
    report("population and requests", 0.0)
    population_rng, workload_rng = seed_streams(seed)
    population = build_population(scenario, population_rng)
    loads = build_loads(scenario, population, workload_rng)
    report("policy decisions", 0.2)
    decisions = decide_loads(scenario.policy_set(seed), population, loads)
    reference = reference_sample(scenario)
    ttfb, total, cf_total = _latencies(model, reference, population, loads, decisions, report)
    report("records", 0.9)
    frame = records_frame(population, loads, decisions, ttfb, total, cf_total)
    report("done", 1.0)
    return frame
