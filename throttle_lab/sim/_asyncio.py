"""The asyncio engine: subscribers as ``async def`` behaviours in virtual time.

Use it when a load depends on what came before: sessions and think times, an adaptive
video player that picks the next segment's bitrate from the last one's throughput,
several flows of one subscriber sharing its access link. A behaviour is any
``async def behaviour(client)``; it calls ``client.fetch(host, size)``, which returns a
:class:`Load` (await it, or let it run while starting more), and ``client.sleep(seconds)``.

A load costs at most one timer event (none when nobody awaits it), never one per packet:
its latency comes from the same flow-level model as the vectorised engine (the scalar
path of the same grid), with the access rate divided among the subscriber's loads in
flight when it starts. The policy is the scenario's, evaluated per load with the same
coverage tables and rule epochs as
the vectorised engine. The default behaviour draws the scenario's Poisson workload, so
both engines answer the same question (``tests/sim/test_engines.py`` says how close).
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import math
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from throttle_lab.core import NO_ACTION, Action, ActionKind
from throttle_lab.scenario import Scenario
from throttle_lab.sim._decide import ACTION_CODES, LoadDecisions, config_of_action
from throttle_lab.sim._flowmodel import FlowModel, ThrottleConfig, _Table
from throttle_lab.sim._frame import records_frame
from throttle_lab.sim._population import (
    SECONDS_PER_DAY,
    Loads,
    Population,
    build_population,
    reference_sample,
    seed_streams,
)
from throttle_lab.sim._vector import BLACKHOLE_TIMEOUT_S
from throttle_lab.sim._virtual import run_in_virtual_time

__all__ = [
    "Behaviour",
    "Client",
    "Fetched",
    "Load",
    "adaptive_video",
    "poisson_workload",
    "run_asyncio",
]

Behaviour = Callable[["Client"], Awaitable[None]]
_NONE, _POLICE, _SHAPE = (ACTION_CODES.index(k) for k in ("none", "police", "shape"))
_RESET, _BLACKHOLE = ACTION_CODES.index("reset"), ACTION_CODES.index("blackhole")
_UNTHROTTLED = ThrottleConfig()


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a behaviour learns about its load when it completes."""

    host: str
    size_bytes: int
    start_s: float
    ttfb_s: float
    total_s: float
    throttled: bool
    action: str

    @property
    def goodput_bps(self) -> float:
        return self.size_bytes * 8.0 / self.total_s if self.total_s > 0 else 0.0


class _World:
    """Shared state of one run: policy tables, flow-model grids, the growing records."""

    def __init__(
        self, scenario: Scenario, seed: int, model: FlowModel, population: Population
    ) -> None:
        self.scenario = scenario
        self.population = population
        self.model = model
        self.reference = reference_sample(scenario)
        self.tables: dict[ThrottleConfig, _Table] = {}
        policies = scenario.policy_set(seed)
        self.policy_names = tuple(p.name for p in policies)
        classes = np.asarray(population.class_names)[population.device_class]
        networks = np.asarray(population.network_names)[population.network]
        self.coverage = [
            p.coverage_table(population.ids, classes, networks, population.address)
            for p in policies
        ]
        self.epochs = [p.epochs() for p in policies]
        self.actions = [[epoch[3] for epoch in epochs] for epochs in self.epochs]
        self.configs = {
            action: config_of_action(action) for actions in self.actions for action in actions
        }
        self.epoch_starts = [[start for start, *_ in epochs] for epochs in self.epochs]
        self.rule_names: list[str] = []
        self._host_rule: dict[tuple[int, int, str], int] = {}
        self.hosts: dict[str, int] = {}
        self.media: dict[str, int] = {m.name: i for i, m in enumerate(scenario.media)}
        self.media_kinds = [m.kind for m in scenario.media]
        self.rows: list[
            tuple[int, int, int, int, float, float, float, float, int, float, int, int, int, int]
        ] = []

    def media_code(self, name: str) -> int:
        """The scenario's media by name; a behaviour's own labels become kind "other"."""
        code = self.media.get(name)
        if code is None:
            code = self.media[name] = len(self.media)
            self.media_kinds.append("other")
        return code

    @property
    def unthrottled(self) -> _Table:
        return self.table(_UNTHROTTLED)

    def table(self, config: ThrottleConfig) -> _Table:
        table = self.tables.get(config)
        if table is None:
            table = self.tables[config] = self.model.table(config, self.reference)
        return table

    def _rule(self, policy: int, epoch: int, host: str) -> int:
        key = (policy, epoch, host)
        code = self._host_rule.get(key)
        if code is None:
            rule = self.epochs[policy][epoch][2].match(host)
            code = -1
            if rule is not None:
                text = str(rule)
                if text not in self.rule_names:
                    self.rule_names.append(text)
                code = self.rule_names.index(text)
            self._host_rule[key] = code
        return code

    def decide(self, subscriber: int, host: str, now: float) -> tuple[int, int, Action]:
        """(policy index, rule index, action) for one load: the scalar twin of decide_loads."""
        for p_index, table in enumerate(self.coverage):
            if not (
                table.selected[subscriber]
                and table.start_s[subscriber] <= now < table.end_s[subscriber]
            ):
                continue
            epoch = bisect.bisect_right(self.epoch_starts[p_index], now) - 1
            rule = self._rule(p_index, epoch, host)
            if rule < 0 or self.population.splits_hello[subscriber]:
                continue
            return p_index, rule, self.actions[p_index][epoch]
        return -1, -1, NO_ACTION


class Client:
    """One subscriber, as a behaviour sees it."""

    def __init__(self, world: _World, subscriber: int, rng: np.random.Generator) -> None:
        population = world.population
        self._world = world
        self.id = subscriber
        self.device_class = population.class_names[population.device_class[subscriber]]
        self.network = population.network_names[population.network[subscriber]]
        self.rtt_s = float(population.rtt_s[subscriber])
        self.down_bps = float(population.down_bps[subscriber])
        self.loss = float(population.loss[subscriber])
        self.rng = rng
        self.scenario = world.scenario
        self._ends: list[float] = []  # end times of this subscriber's loads in flight
        self._loop = asyncio.get_running_loop()  # clients live inside the run's loop

    @property
    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, when: float) -> None:
        await asyncio.sleep(max(0.0, when - self.now))

    def fetch(self, host: str, size_bytes: int, media: str = "") -> Load:
        """Start a load now. Await the result to wait for its last byte; or don't: a load
        nobody awaits costs no event at all (its record is complete when it starts)."""
        world = self._world
        now = self._loop.time()
        size = max(1, int(size_bytes))
        ends = self._ends
        while ends and ends[0] <= now:
            heapq.heappop(ends)
        share = self.down_bps / (len(ends) + 1)  # loads in flight share the access link
        cf_ttfb, cf_total = world.unthrottled.predict_one(size, self.rtt_s, share, self.loss)
        policy, rule, action = world.decide(self.id, host, now)
        config = world.configs.get(action) if policy >= 0 else None
        if policy < 0 or action.kind is ActionKind.NONE:
            code, ttfb, total = _NONE, cf_ttfb, cf_total
        elif config is not None:
            code = ACTION_CODES.index(config.kind)
            ttfb, total = world.table(config).predict_one(size, self.rtt_s, share, self.loss)
        elif action.kind is ActionKind.RESET:
            code, ttfb, total = _RESET, math.nan, self.rtt_s
        else:
            code, ttfb, total = _BLACKHOLE, math.nan, BLACKHOLE_TIMEOUT_S
        world.rows.append(
            (
                self.id,
                world.media_code(media or "other"),
                world.hosts.setdefault(host, len(world.hosts)),
                size,
                now,
                ttfb,
                total,
                cf_total,
                code,
                action.rate_bps or 0.0,
                action.burst_bytes or 0,
                action.queue_bytes or 0,
                policy,
                rule,
            )
        )
        heapq.heappush(ends, now + total)
        return Load(host, size, now, ttfb, total, code)


class Load:
    """A load in flight; ``await`` it for its :class:`Fetched` result at its last byte.

    Holds plain values: most loads are never awaited, so the result is built on demand.
    """

    __slots__ = ("_code", "_host", "_size", "_start", "_total", "_ttfb")

    def __init__(
        self, host: str, size: int, start: float, ttfb: float, total: float, code: int
    ) -> None:
        self._host, self._size, self._start = host, size, start
        self._ttfb, self._total, self._code = ttfb, total, code

    @property
    def result(self) -> Fetched:
        return Fetched(
            self._host,
            self._size,
            self._start,
            self._ttfb,
            self._total,
            self._code != _NONE,
            ACTION_CODES[self._code],
        )

    def __await__(self) -> Generator[Any, None, Fetched]:
        loop = asyncio.get_running_loop()
        end = self._start + self._total
        if loop.time() < end:
            future: asyncio.Future[None] = loop.create_future()
            loop.call_at(end, _resolve, future)
            yield from future
        return self.result


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # the awaiting task may have been cancelled
        future.set_result(None)


async def poisson_workload(client: Client) -> None:
    """The scenario's own workload: Poisson requests per media kind over the horizon."""
    scenario = client.scenario
    horizon = scenario.horizon_s
    days = horizon / SECONDS_PER_DAY
    arrivals: list[tuple[float, int, str, int]] = []
    for m_index, media in enumerate(scenario.media):
        if client.device_class not in media.classes:
            continue
        count = int(client.rng.poisson(media.per_subscriber_per_day * days))
        if count == 0:
            continue
        times = client.rng.uniform(0.0, horizon, count)
        weights = np.asarray(media.host_weights, dtype=float)
        hosts = client.rng.choice(len(weights), size=count, p=weights / weights.sum())
        sizes = np.maximum(1, np.rint(media.size.sample(client.rng, count))).astype(int)
        arrivals.extend(
            zip(
                times.tolist(),
                [m_index] * count,
                [media.hosts[h] for h in hosts],
                sizes.tolist(),
                strict=True,
            )
        )
    arrivals.sort()
    names = [m.name for m in scenario.media]
    # One timer callback per request and no coroutine step (the workload never awaits a
    # load); each callback schedules the next, so the loop's heap (whose entries compare
    # in Python) holds one entry per subscriber, not one per request.
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def start(index: int) -> None:
        _, m_index, host, size = arrivals[index]
        client.fetch(host, size, names[m_index])
        if index + 1 < len(arrivals):
            loop.call_at(arrivals[index + 1][0], start, index + 1)
        else:
            done.set_result(None)

    if arrivals:
        loop.call_at(arrivals[0][0], start, 0)
        await done


def adaptive_video(
    host: str = "video.twimg.com",
    *,
    ladder_bps: Sequence[float] = (256_000, 832_000, 2_176_000),
    segment_s: float = 4.0,
    segments: int = 30,
    start_s: float = 0.0,
    buffer_target_s: float = 20.0,
) -> Behaviour:
    """A video player (like Twitter's HLS ladder) that picks each segment's bitrate from
    the last segment's throughput, keeps a buffer, and stalls when it runs dry."""

    async def player(client: Client) -> None:
        await client.sleep_until(start_s)
        throughput, buffer_s = ladder_bps[0], 0.0
        for _ in range(segments):
            fitting = [b for b in ladder_bps if b <= 0.8 * throughput]
            bitrate = max(fitting) if fitting else ladder_bps[0]
            load = await client.fetch(
                host, int(bitrate * segment_s / 8), media=f"video {bitrate / 1e3:.0f}k"
            )
            throughput = load.goodput_bps
            buffer_s = max(0.0, buffer_s - load.total_s) + segment_s  # played while loading
            if buffer_s > buffer_target_s:
                await client.sleep(buffer_s - buffer_target_s)
                buffer_s = buffer_target_s

    return player


def run_asyncio(
    scenario: Scenario,
    *,
    seed: int,
    model: FlowModel,
    behaviour: Behaviour | None = None,
    subscribers: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Run ``behaviour`` (default: the scenario's workload) for every subscriber."""
    population_rng, _ = seed_streams(seed)
    population = build_population(scenario, population_rng)
    world = _World(scenario, seed, model, population)
    chosen = range(len(population)) if subscribers is None else subscribers
    streams = np.random.SeedSequence([seed, 2]).spawn(len(population))
    act = behaviour or poisson_workload

    async def main() -> None:
        clients = [Client(world, s, np.random.default_rng(streams[s])) for s in chosen]
        await asyncio.gather(*(act(c) for c in clients))

    run_in_virtual_time(main)
    return _frame(world, population)


def _frame(world: _World, population: Population) -> pd.DataFrame:
    rows = sorted(world.rows, key=lambda r: (r[4], r[0]))
    columns: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 14
    loads = Loads(
        host_names=tuple(world.hosts),
        kind_names=tuple(world.media_kinds),
        media_names=tuple(world.media),
        subscriber=np.array(columns[0], dtype=np.int32),
        media=np.array(columns[1], dtype=np.int16),
        host=np.array(columns[2], dtype=np.int16),
        size_bytes=np.array(columns[3], dtype=np.int64),
        start_s=np.array(columns[4], dtype=float),
    )
    decisions = LoadDecisions(
        action=np.array(columns[8], dtype=np.int8),
        rate_bps=np.array(columns[9], dtype=float),
        burst_bytes=np.array(columns[10], dtype=np.int64),
        queue_bytes=np.array(columns[11], dtype=np.int64),
        policy=np.array(columns[12], dtype=np.int16),
        rule=np.array(columns[13], dtype=np.int16),
        policy_names=world.policy_names,
        rule_names=tuple(world.rule_names),
    )
    ttfb = np.array(columns[5], dtype=float)
    total = np.array(columns[6], dtype=float)
    cf_total = np.array(columns[7], dtype=float)
    return records_frame(population, loads, decisions, ttfb, total, cf_total)
