"""All plots of a run at once: as figures (notebooks) or as PNG files (``OUT/*.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from throttle_lab.plot._common import story_loads
from throttle_lab.plot._latency import latency_cdf, latency_timeline
from throttle_lab.plot._slowdown import slowdown_by_network
from throttle_lab.plot._traces import throughput_traces

if TYPE_CHECKING:
    from throttle_lab.sim import RunResult

__all__ = ["run_figures", "write_run_plots"]

_DPI = 100


def run_figures(result: RunResult) -> dict[str, Figure]:
    """The run's plots by file stem: latency_cdf, latency_timeline, slowdown_by_network,
    throughput_traces."""
    # Cut the table down to the story's rows and columns once: the plots then work on a
    # fraction of the run's memory instead of each filtering millions of rows again.
    columns = ["kind", "network", "start_s", "total_s", "counterfactual_total_s", "throttled"]
    loads, _ = story_loads(result.loads, columns)
    changes = result.change_times
    scenario = result.scenario
    return {
        "latency_cdf": latency_cdf(loads, change_times=changes, scenario=scenario),
        "latency_timeline": latency_timeline(loads, changes, scenario),
        "slowdown_by_network": slowdown_by_network(loads, change_times=changes, scenario=scenario),
        "throughput_traces": throughput_traces(result),
    }


def write_run_plots(result: RunResult, out_dir: Path) -> list[Path]:
    """Write every plot of ``result`` as ``out_dir/<name>.png`` and return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, figure in run_figures(result).items():
        path = out_dir / f"{name}.png"
        figure.savefig(path, dpi=_DPI)
        paths.append(path)
    return paths
