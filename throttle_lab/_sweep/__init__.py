"""Parameter sweeps: a scenario run at every point of a grid of ``--set`` keys.

``throttle-lab sweep SCENARIO --grid KEY=V1,V2 [--grid ...]`` (or
:func:`throttle_lab.sweep`) runs every combination, or a seeded sample, on this
machine's cores through a Dask ``LocalCluster`` by default or on a Dask cluster given its
scheduler's address; each point is deterministic (its seed comes from its hash) and
cached by the hash of what decides it, so a rerun skips finished points; a failing point
is a row with its error. The result is one table (``sweep.parquet``) with a column per
parameter and the run's summary metrics, and :func:`plot_metric` draws one metric
against one parameter.
"""

from throttle_lab._sweep._grid import (
    GridAxis,
    SweepPoint,
    grid_axes,
    parse_grid_option,
    point_seed,
    sweep_points,
)
from throttle_lab._sweep._plot import plot_metric
from throttle_lab._sweep._point import (
    PointCache,
    PointTask,
    metric_names,
    point_key,
    point_metrics,
    run_point,
)
from throttle_lab._sweep._run import Scheduler, open_executor, sweep
from throttle_lab._sweep._table import SweepResult, results_table

__all__ = [
    "GridAxis",
    "PointCache",
    "PointTask",
    "Scheduler",
    "SweepPoint",
    "SweepResult",
    "grid_axes",
    "metric_names",
    "open_executor",
    "parse_grid_option",
    "plot_metric",
    "point_key",
    "point_metrics",
    "point_seed",
    "results_table",
    "run_point",
    "sweep",
    "sweep_points",
]
