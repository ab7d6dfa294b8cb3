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

from throttle_lab.records import COLUMNS, Outcome, Source
from throttle_lab.scenario import Scenario
from throttle_lab.sim._decide import ACTION_CODES, LoadDecisions, decide_loads
from throttle_lab.sim._flowmodel import FlowModel, ThrottleConfig
from throttle_lab.sim._population import (
    Loads,
    Population,
    build_loads,
    build_population,
    seed_streams,
)

__all__ = ["BLACKHOLE_TIMEOUT_S", "run_vector"]

BLACKHOLE_TIMEOUT_S = 30.0  # how long a browser waits on a silent connection before giving up
Progress = Callable[[str, float], None]


def _latencies(
    model: FlowModel,
    population: Population,
    loads: Loads,
    decisions: LoadDecisions,
    progress: Progress,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ttfb and total under the decided action, and the no-policy total, per load."""
    rows = loads.subscriber.astype(np.intp)
    size = loads.size_bytes.astype(float)
    rtt, down, loss = population.rtt_s[rows], population.down_bps[rows], population.loss[rows]
    ttfb = np.full(len(loads), np.nan)
    total = np.full(len(loads), np.nan)
    progress("counterfactual (no policy)", 0.3)
    cf_ttfb, cf_total = model.predict(ThrottleConfig(), size, rtt, down, loss)
    untouched = decisions.action == ACTION_CODES.index("none")
    ttfb[untouched], total[untouched] = cf_ttfb[untouched], cf_total[untouched]
    bucketed = np.isin(
        decisions.action, [ACTION_CODES.index("police"), ACTION_CODES.index("shape")]
    )
    keys = np.column_stack(
        [decisions.action, decisions.rate_bps, decisions.burst_bytes, decisions.queue_bytes]
    )[bucketed]
    configs = np.unique(keys, axis=0) if len(keys) else np.zeros((0, 4))
    for step, (code, rate, burst, queue) in enumerate(configs):
        config = ThrottleConfig(ACTION_CODES[int(code)], float(rate), int(burst), int(queue))
        progress(f"{config.kind} at {rate:g} bit/s", 0.4 + 0.4 * step / len(configs))
        mask = bucketed & np.all(
            np.column_stack(
                [decisions.action, decisions.rate_bps, decisions.burst_bytes, decisions.queue_bytes]
            )
            == (code, rate, burst, queue),
            axis=1,
        )
        ttfb[mask], total[mask] = model.predict(
            config, size[mask], rtt[mask], down[mask], loss[mask]
        )
    reset = decisions.action == ACTION_CODES.index("reset")
    total[reset] = rtt[reset]
    blackhole = decisions.action == ACTION_CODES.index("blackhole")
    total[blackhole] = BLACKHOLE_TIMEOUT_S
    return ttfb, total, cf_total, cf_ttfb


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
    ttfb, total, cf_total, _ = _latencies(model, population, loads, decisions, report)
    report("records", 0.9)
    frame = _frame(population, loads, decisions, ttfb, total, cf_total)
    report("done", 1.0)
    return frame


def _categorical(codes: np.ndarray, names: tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype(np.int32), categories=list(names))


def _frame(
    population: Population,
    loads: Loads,
    decisions: LoadDecisions,
    ttfb: np.ndarray,
    total: np.ndarray,
    cf_total: np.ndarray,
) -> pd.DataFrame:
    rows = loads.subscriber.astype(np.intp)
    n = len(loads)
    action = decisions.action
    outcome = np.zeros(n, dtype=np.int32)  # 0 ok, 1 reset, 2 timeout
    outcome[action == ACTION_CODES.index("reset")] = 1
    outcome[action == ACTION_CODES.index("blackhole")] = 2
    ok = outcome == 0
    size = loads.size_bytes
    goodput = np.where(ok, size * 8.0 / total, 0.0)
    nan = np.full(n, np.nan)
    kinds = tuple(dict.fromkeys(loads.kind_names))
    kind_of_media = np.array([kinds.index(k) for k in loads.kind_names], dtype=np.int32)
    policy_codes = decisions.policy.astype(np.int32) + 1
    rule_codes = decisions.rule.astype(np.int32) + 1
    data = {
        "subscriber": loads.subscriber.astype(np.int64),
        "device_class": _categorical(population.device_class[rows], population.class_names),
        "network": _categorical(population.network[rows], population.network_names),
        "kind": _categorical(kind_of_media[loads.media], kinds),
        "host": _categorical(loads.host, loads.host_names),
        "size_bytes": size,
        "start_s": loads.start_s,
        "ttfb_s": np.where(ok, ttfb, np.nan),
        "total_s": total,
        "goodput_bps": goodput,
        "throttled": decisions.throttled,
        "action": _categorical(action, ACTION_CODES),
        "outcome": _categorical(
            outcome, (Outcome.OK.value, Outcome.RESET.value, Outcome.TIMEOUT.value)
        ),
        "source": pd.Categorical.from_codes(np.zeros(n, dtype=np.int32), [Source.SIMULATED.value]),
        "media": _categorical(loads.media, loads.media_names),
        "policy": pd.Categorical.from_codes(policy_codes, ["", *decisions.policy_names]),
        "rule": pd.Categorical.from_codes(rule_codes, ["", *decisions.rule_names]),
        "bytes_received": np.where(ok, size, 0),
        "counterfactual_total_s": cf_total,
        "dns_s": nan,
        "connect_s": nan,
        "tls_s": nan,
    }
    frame = pd.DataFrame(data, columns=list(COLUMNS))
    return frame
