"""Engine output as the record schema: one table row per load, categorical text columns.

Both engines hand over columns (codes into name tables) and get the same DataFrame:
categoricals keep ten million rows within memory, and Parquet stores them as
dictionaries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from throttle_lab.records import COLUMNS, Outcome, Source
from throttle_lab.sim._decide import ACTION_CODES, LoadDecisions
from throttle_lab.sim._population import Loads, Population

__all__ = ["records_frame"]


def _categorical(codes: np.ndarray, names: tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype(np.int32), categories=list(names))


def records_frame(
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
