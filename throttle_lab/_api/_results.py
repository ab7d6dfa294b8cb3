"""What a run gives a notebook: the loads table, the summary, tables and figures.

:class:`Results` wraps the simulator's :class:`~throttle_lab.sim.RunResult` and adds
nothing it could not compute from the records: every number and figure comes from the
loads table, so a simulated and a probed run can be read by the same code. Figures are
matplotlib ``Figure`` objects made without pyplot: leave one as a cell's last expression
to show it, call ``.savefig(path)`` to keep it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from throttle_lab.scenario import Scenario
    from throttle_lab.sim import FlowResult, RunResult

__all__ = ["Results"]


class Results:
    """One run of a scenario. Made by :func:`throttle_lab.run` (and its kin).

    >>> r = tl.run(tl.load("scenarios/russia-twitter-2021.toml"))
    >>> r.loads.groupby("device_class", observed=True)["total_s"].median()
    >>> r.by_period()            # median load time per class and period, as a table
    >>> r.plot_latency_cdf()     # a Figure
    """

    def __init__(self, run: RunResult) -> None:
        self.run = run  # the simulator's own result, for anything not wrapped here

    # ---- numbers

    @property
    def scenario(self) -> Scenario:
        """The scenario that was run."""
        return self.run.scenario

    @property
    def seed(self) -> int:
        """The seed the run used (the same seed gives the same loads, bit for bit)."""
        return self.run.seed

    @property
    def engine(self) -> str:
        """``'vector'`` or ``'asyncio'``."""
        return self.run.engine

    @property
    def wall_s(self) -> float:
        """How long the run took on this machine (seconds)."""
        return self.run.wall_s

    @property
    def loads(self) -> pd.DataFrame:
        """One row per media load, in the record schema (see ``throttle_lab.records``):
        ``total_s`` with the policy, ``counterfactual_total_s`` without it, ``throttled``,
        ``device_class``, ``network``, ``kind``, ``host`` ..."""
        return self.run.loads

    @property
    def summary(self) -> dict[str, Any]:
        """The ``summary.json`` of the run: overall, per class, class x period, class x
        network and class x media statistics (medians, p90, share over 10 s, slowdowns)."""
        return self.run.summary

    def by_period(self) -> pd.DataFrame:
        """Per device class and period between policy changes: loads, share throttled,
        median load time with and without the policy, share over 10 s (the table that
        ``throttle-lab run`` prints)."""
        return self._table("by_class_period")

    def by_network(self) -> pd.DataFrame:
        """Per device class and network: the same statistics as :meth:`by_period`."""
        return self._table("by_class_network")

    def by_media(self) -> pd.DataFrame:
        """Per device class and media (twitter photos, control photos ...)."""
        return self._table("by_class_media")

    def _table(self, key: str) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.summary[key])

    def slowdown_table(self) -> pd.DataFrame:
        """Median slowdown of photo and video loads per class and network, within the
        policy window (what :meth:`plot_slowdown` draws)."""
        from throttle_lab.plot import slowdown_table

        return slowdown_table(self.loads, change_times=self.run.change_times)

    def sample_trace(self, device_class: str) -> FlowResult | None:
        """The packet-level trace of one throttled photo or video load of a class."""
        return self.run.sample_trace(device_class)

    # ---- figures

    def plot_latency_cdf(self) -> Figure:
        """Load-time CDFs per class, with and without the policy (in the policy window)."""
        from throttle_lab.plot import latency_cdf

        run = self.run
        return latency_cdf(run.loads, change_times=run.change_times, scenario=run.scenario)

    def plot_timeline(self) -> Figure:
        """Median load time per day and class over the timeline, policy changes marked."""
        from throttle_lab.plot import latency_timeline

        run = self.run
        return latency_timeline(run.loads, run.change_times, run.scenario)

    def plot_slowdown(self) -> Figure:
        """Median slowdown per network, one panel per class (grey: not throttled)."""
        from throttle_lab.plot import slowdown_by_network

        run = self.run
        return slowdown_by_network(run.loads, change_times=run.change_times, scenario=run.scenario)

    def plot_traces(self) -> Figure:
        """Throughput over time of one throttled load per class (packet-level model)."""
        from throttle_lab.plot import throughput_traces

        return throughput_traces(self.run)

    def figures(self) -> dict[str, Figure]:
        """Every plot of the run by name (``latency_cdf``, ``latency_timeline``,
        ``slowdown_by_network``, ``throughput_traces``)."""
        from throttle_lab.plot import run_figures

        return run_figures(self.run)

    def write(self, out: str | Path) -> list[Path]:
        """``loads.parquet``, ``summary.json`` and every plot as PNG into ``out``
        (what ``throttle-lab run --out`` writes)."""
        return self.run.write(Path(out))

    def __repr__(self) -> str:
        return (
            f"<Results {self.scenario.name!r}: {len(self.loads):,} loads of"
            f" {self.scenario.subscribers:,} subscribers, engine {self.engine},"
            f" seed {self.seed}>"
        )
