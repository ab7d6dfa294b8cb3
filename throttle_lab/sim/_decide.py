"""The scenario's policies applied to millions of loads at once.

The same :class:`~throttle_lab.core.PolicySet` as every other engine, evaluated by numpy:
each policy's coverage once per subscriber (:meth:`Policy.coverage_table`), each rule set
once per distinct host and epoch (:meth:`Policy.epochs`), then masks over the loads. The
first policy that covers and matches a load decides it, as in :meth:`PolicySet.decide`
(a test checks the two agree load by load on a sample).

Subscribers who split their ClientHello escape every SNI rule: the device does not
reassemble, so it never sees the name (destination-prefix rules still catch them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from throttle_lab.core import Action, ActionKind, PolicySet
from throttle_lab.sim._flowmodel import ThrottleConfig
from throttle_lab.sim._population import Loads, Population

__all__ = ["ACTION_CODES", "LoadDecisions", "config_of_action", "decide_loads"]

ACTION_CODES: tuple[str, ...] = tuple(kind.value for kind in ActionKind)
_NONE = ACTION_CODES.index(ActionKind.NONE.value)


@dataclass(frozen=True, slots=True)
class LoadDecisions:
    """Per load: the action (code into ACTION_CODES) and its bucket; the policy and rule."""

    action: npt.NDArray[np.int8]
    rate_bps: npt.NDArray[np.float64]
    burst_bytes: npt.NDArray[np.int64]
    queue_bytes: npt.NDArray[np.int64]
    policy: npt.NDArray[np.int16]  # index into policy_names, -1 for none
    rule: npt.NDArray[np.int16]  # index into rule_names, -1 for none
    policy_names: tuple[str, ...]
    rule_names: tuple[str, ...]
    config: npt.NDArray[np.int16] | None = None  # index into configs, -1 for no bucket
    configs: tuple[ThrottleConfig, ...] = ()  # the distinct police/shape actions

    @property
    def throttled(self) -> npt.NDArray[np.bool_]:
        """A policy hit the load with an action (a NONE-action exception does not count)."""
        return np.asarray(self.action != _NONE)


def decide_loads(policies: PolicySet, population: Population, loads: Loads) -> LoadDecisions:
    n = len(loads)
    action = np.full(n, _NONE, dtype=np.int8)
    rate = np.zeros(n)
    burst = np.zeros(n, dtype=np.int64)
    queue = np.zeros(n, dtype=np.int64)
    policy_of = np.full(n, -1, dtype=np.int16)
    rule_of = np.full(n, -1, dtype=np.int16)
    rule_names: list[str] = []
    config_of = np.full(n, -1, dtype=np.int16)
    configs: list[ThrottleConfig] = []
    undecided = np.ones(n, dtype=bool)
    rows = loads.subscriber.astype(np.intp)
    classes = np.asarray(population.class_names)[population.device_class]
    networks = np.asarray(population.network_names)[population.network]
    evades_sni = population.splits_hello[rows]
    for p_index, policy in enumerate(policies):
        table = policy.coverage_table(population.ids, classes, networks, population.address)
        covered = table.covered_at(loads.start_s, rows=rows)
        for start, until, rules, epoch_action in policy.epochs():
            in_epoch = undecided & covered & (loads.start_s >= start) & (loads.start_s < until)
            if not in_epoch.any():
                continue
            # Which rule (if any) matches each distinct host in this epoch.
            host_rule = np.full(len(loads.host_names), -1, dtype=np.int16)
            for h_index, host in enumerate(loads.host_names):
                rule = rules.match(host)
                if rule is not None:
                    text = str(rule)
                    if text not in rule_names:
                        rule_names.append(text)
                    host_rule[h_index] = rule_names.index(text)
            matched_rule = host_rule[loads.host]
            hit = in_epoch & (matched_rule >= 0) & ~evades_sni
            action[hit] = ACTION_CODES.index(epoch_action.kind.value)
            rate[hit] = epoch_action.rate_bps or 0.0
            burst[hit] = epoch_action.burst_bytes or 0
            queue[hit] = epoch_action.queue_bytes or 0
            policy_of[hit] = p_index
            rule_of[hit] = matched_rule[hit]
            config = config_of_action(epoch_action)
            if config is not None:
                if config not in configs:
                    configs.append(config)
                config_of[hit] = configs.index(config)
            undecided &= ~hit
    return LoadDecisions(
        action,
        rate,
        burst,
        queue,
        policy_of,
        rule_of,
        tuple(p.name for p in policies),
        tuple(rule_names),
        config_of,
        tuple(configs),
    )


def config_of_action(action: Action) -> ThrottleConfig | None:
    """The flow model's key for a bucketed action (None for none/reset/blackhole)."""
    if action.kind not in (ActionKind.POLICE, ActionKind.SHAPE):
        return None
    return ThrottleConfig(
        action.kind.value, action.rate_bps or 0.0, action.burst_bytes or 0, action.queue_bytes or 0
    )
