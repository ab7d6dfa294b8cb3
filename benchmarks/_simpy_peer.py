"""The SimPy peer of the speed benchmark: the scenario's media loads, written as a SimPy
user would write them (``pip install simpy``).

One ``env.process`` per load: a generator that waits until the load starts, computes its
latency with the package's own flow-level model (``_World.decide`` for the policy and
``_Table.predict_one`` for the action and for the counterfactual, exactly as
``throttle_lab.sim._asyncio.Client.fetch`` does, including the split of the access rate
among the subscriber's loads in flight), waits for the load to finish and appends its
record. The loads are the vectorised engine's own (``build_population`` and
``build_loads`` with the same seed), so the peer simulates exactly the same workload.

Only the simulation proper is timed (:func:`simulate`): drawing the loads and building
the policy tables (:func:`prepare`) are not, which flatters the peer a little, since the
package's engines are timed end to end.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from throttle_lab.core import ActionKind
from throttle_lab.scenario import Scenario
from throttle_lab.sim import FlowModel
from throttle_lab.sim._asyncio import _World
from throttle_lab.sim._decide import ACTION_CODES
from throttle_lab.sim._population import Loads, build_loads, build_population, seed_streams
from throttle_lab.sim._vector import BLACKHOLE_TIMEOUT_S

__all__ = ["PeerInput", "PeerRecord", "prepare", "simulate"]

_NONE, _RESET = ACTION_CODES.index("none"), ACTION_CODES.index("reset")
_BLACKHOLE = ACTION_CODES.index("blackhole")

# (load index, subscriber, size, start, ttfb, total, counterfactual total, action code,
#  rate, burst, queue, policy, rule): the asyncio engine's row, keyed by load index so that
#  the benchmark can pair it with the vectorised engine's row of the same load.
PeerRecord = tuple[int, int, int, float, float, float, float, int, float, int, int, int, int]


@dataclass(frozen=True)
class PeerInput:
    """What a SimPy user would start from: the loads as plain Python lists, and the model."""

    world: _World
    loads: Loads
    subscriber: list[int]
    host: list[str]
    size_bytes: list[int]
    start_s: list[float]


def prepare(scenario: Scenario, *, seed: int, model: FlowModel) -> PeerInput:
    """The vectorised engine's population and loads for this seed, and the policy tables."""
    population_rng, workload_rng = seed_streams(seed)
    population = build_population(scenario, population_rng)
    loads = build_loads(scenario, population, workload_rng)
    world = _World(scenario, seed, model, population)
    return PeerInput(
        world=world,
        loads=loads,
        subscriber=loads.subscriber.tolist(),
        host=[loads.host_names[code] for code in loads.host.tolist()],
        size_bytes=loads.size_bytes.tolist(),
        start_s=loads.start_s.tolist(),
    )


def simulate(peer: PeerInput) -> list[PeerRecord]:
    """Run every load as its own SimPy process; the records in completion order."""
    env = simpy.Environment()
    world = peer.world
    population = world.population
    rtt_s: list[float] = population.rtt_s.tolist()
    down_bps: list[float] = population.down_bps.tolist()
    loss: list[float] = population.loss.tolist()
    in_flight = [0] * len(population)
    records: list[PeerRecord] = []

    def media_load(
        index: int, subscriber: int, host: str, size: int, start: float
    ) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(start)
        now = env.now
        rtt, link_loss = rtt_s[subscriber], loss[subscriber]
        share = down_bps[subscriber] / (in_flight[subscriber] + 1)
        cf_ttfb, cf_total = world.unthrottled.predict_one(size, rtt, share, link_loss)
        policy, rule, act = world.decide(subscriber, host, now)
        config = world.configs.get(act) if policy >= 0 else None
        if policy < 0 or act.kind is ActionKind.NONE:
            action, ttfb, total = _NONE, cf_ttfb, cf_total
        elif config is not None:
            action = ACTION_CODES.index(config.kind)
            ttfb, total = world.table(config).predict_one(size, rtt, share, link_loss)
        elif act.kind is ActionKind.RESET:
            action, ttfb, total = _RESET, math.nan, rtt
        else:
            action, ttfb, total = _BLACKHOLE, math.nan, BLACKHOLE_TIMEOUT_S
        in_flight[subscriber] += 1
        yield env.timeout(total)
        in_flight[subscriber] -= 1
        records.append(
            (
                index,
                subscriber,
                size,
                now,
                ttfb,
                total,
                cf_total,
                action,
                act.rate_bps or 0.0,
                act.burst_bytes or 0,
                act.queue_bytes or 0,
                policy,
                rule,
            )
        )

    for index, (subscriber, host, size, start) in enumerate(
        zip(peer.subscriber, peer.host, peer.size_bytes, peer.start_s, strict=True)
    ):
        env.process(media_load(index, subscriber, host, size, start))
    env.run()
    return records


def columns(records: list[PeerRecord], count: int) -> dict[str, np.ndarray]:
    """The records as arrays in load order (the vectorised engine's row order)."""
    order = np.array([r[0] for r in records], dtype=np.int64)
    if len(order) != count or len(np.unique(order)) != count:
        raise RuntimeError(f"the SimPy peer finished {len(order)} of {count} loads")
    out: dict[str, np.ndarray] = {}
    for position, name in ((5, "total_s"), (6, "counterfactual_total_s"), (7, "action")):
        values = np.empty(count)
        values[order] = [r[position] for r in records]
        out[name] = values
    return out
