"""Figures of a probe report for notebooks (no pyplot: nothing global, nothing to close).

The probe writes its own PNG files next to ``report.md``; these show the same loads as
``Figure`` objects, so a notebook displays them inline wherever the report lives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from throttle_lab.records import LoadRecord

__all__ = ["load_times_figure", "progress_figure"]

_LABELS = {
    "target": "target",
    "control": "control (another host)",
    "sni_name": "target's server, target's name",
    "sni_unrelated": "target's server, unrelated name",
    "sni_none": "target's server, no name",
    "split_name": "target's name, ClientHello split",
}


def _figure(panels: int, height_in: float) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 0.6 + height_in * panels), dpi=100, layout="constrained")
    axes = list(fig.subplots(panels, 1, squeeze=False).ravel())
    return fig, axes


def load_times_figure(loads: pd.DataFrame, arm_order: Sequence[str]) -> Figure:
    """Each load as a dot, per arm (rows) and target (panels); failed loads in grey."""
    targets = list(dict.fromkeys(loads["target"])) if len(loads) else ["(no loads)"]
    fig, axes = _figure(len(targets), 2.8)
    for ax, target in zip(axes, targets, strict=True):
        mine = loads[loads["target"] == target] if len(loads) else loads
        arms = [a for a in arm_order if a in set(mine.get("arm", []))]
        for row, arm in enumerate(arms):
            group = mine[mine["arm"] == arm]
            ok = group["outcome"] == "ok"
            jitter = np.linspace(-0.15, 0.15, len(group)) if len(group) > 1 else np.zeros(1)
            ax.scatter(group["total_s"][ok], row + jitter[ok.to_numpy()], s=18, color=f"C{row}")
            ax.scatter(
                group["total_s"][~ok], row + jitter[~ok.to_numpy()], s=18, color="0.6", marker="x"
            )
            median = float(np.median(group["total_s"][ok])) if ok.any() else math.nan
            if math.isfinite(median):
                ax.plot([median, median], [row - 0.3, row + 0.3], color="0.2", linewidth=1.5)
        ax.set_yticks(range(len(arms)), [_LABELS.get(a, a) for a in arms])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("load time (s, log scale); bar: median; x: failed")
        ax.set_title(str(target), loc="left")
        ax.grid(True, axis="x", alpha=0.3)
    return fig


def _median_load(records: list[LoadRecord]) -> LoadRecord | None:
    done = sorted((r for r in records if r.outcome == "ok"), key=lambda r: r.total_s)
    return done[len(done) // 2] if done else None


def progress_figure(records: Sequence[LoadRecord], arm_order: Sequence[str]) -> Figure:
    """Bytes received over time by the median load of each arm, one panel per target."""
    targets = list(dict.fromkeys(str(r.extra.get("target")) for r in records)) or ["(no loads)"]
    fig, axes = _figure(len(targets), 3.2)
    for ax, target in zip(axes, targets, strict=True):
        mine = [r for r in records if str(r.extra.get("target")) == target]
        for index, arm in enumerate(arm_order):
            load = _median_load([r for r in mine if r.extra.get("arm") == arm])
            if load is None or not load.extra.get("progress"):
                continue
            progress = np.asarray(load.extra["progress"], dtype=float)
            if progress.ndim == 2 and len(progress):
                ax.step(
                    progress[:, 0],
                    progress[:, 1] / 1e3,
                    where="post",
                    color=f"C{index}",
                    label=f"{_LABELS.get(arm, arm)}: {load.total_s:.2f} s",
                )
        ax.set_xlabel("seconds since the load began")
        ax.set_ylabel("KB received")
        ax.set_title(f"{target}: the median load of each arm", loc="left")
        ax.grid(True, alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=9)
    return fig
