"""How long media loads took: CDFs per device class, and the daily median over the timeline.

Both compare the run with its counterfactual (the same loads, no policy), which every
record carries, so the gap between the red and the blue line *is* the policy's effect.
CDFs are drawn from a few hundred quantiles, timelines from per-bin quantiles: the cost
is a sort of the loads, whatever their number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import matplotlib.dates as mdates
import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import PercentFormatter

from throttle_lab.plot._common import (
    COUNTERFACTUAL_COLOUR,
    LONG_LOAD_S,
    POLICY_COLOUR,
    FloatArray,
    change_marks,
    class_names,
    clip_for_log,
    grouped_quantiles,
    in_window,
    log_seconds_axis,
    message_panel,
    new_figure,
    policy_window,
    sorted_quantiles,
    story_loads,
    time_label,
    window_label,
)

if TYPE_CHECKING:
    from throttle_lab.scenario import Scenario

__all__ = ["latency_cdf", "latency_timeline"]

# 0, 0.25 %, ... 100 %: smooth enough for a CDF, cheap whatever the number of loads.
_CDF_LEVELS = np.linspace(0.0, 1.0, 401)
_MIN_LOADS_PER_BIN = 5  # a median of fewer loads is noise, not a trend


def _cdf(ax: Axes, seconds: FloatArray, colour: str, style: str, label: str) -> None:
    seconds = seconds[~np.isnan(seconds)]
    if len(seconds) == 0:
        return
    levels = sorted_quantiles(np.sort(clip_for_log(seconds)), _CDF_LEVELS)
    ax.plot(levels, _CDF_LEVELS, color=colour, linestyle=style, linewidth=1.8, label=label)


def _share_over(seconds: FloatArray) -> float:
    seconds = seconds[~np.isnan(seconds)]
    return float(np.mean(seconds > LONG_LOAD_S)) if len(seconds) else math.nan


def latency_cdf(
    loads: pd.DataFrame,
    *,
    change_times: Sequence[tuple[float, str]] = (),
    scenario: Scenario | None = None,
) -> Figure:
    """CDF of load time per device class: with the policy (red) and without (blue, the
    counterfactual), for all photo and video loads (solid) and the throttled ones alone
    (dashed). With ``change_times``, only loads that started while the policy was in force
    (first to last change) count. A mark at 10 s: "took ages"."""
    window = policy_window(change_times)
    frame, what = story_loads(loads, ["start_s", "total_s", "counterfactual_total_s", "throttled"])
    frame = frame.loc[in_window(frame["start_s"], window)]
    classes = class_names(frame) or ["(no loads)"]
    columns = min(len(classes), 3)
    rows = math.ceil(len(classes) / columns)
    fig = new_figure(min(max(6.0 * columns, 10.0), 15.0), 4.6 * rows)
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    for ax, name in zip(axes, classes, strict=False):
        group = frame.loc[frame["device_class"] == name]
        total = group["total_s"].to_numpy(dtype=float)
        counterfactual = group["counterfactual_total_s"].to_numpy(dtype=float)
        throttled = group["throttled"].to_numpy(dtype=bool)
        _cdf(ax, total, POLICY_COLOUR, "-", "all, with policy")
        _cdf(ax, counterfactual, COUNTERFACTUAL_COLOUR, "-", "all, no policy")
        _cdf(ax, total[throttled], POLICY_COLOUR, "--", "throttled, with policy")
        _cdf(ax, counterfactual[throttled], COUNTERFACTUAL_COLOUR, "--", "throttled, no policy")
        ax.axvline(LONG_LOAD_S, color="0.3", linewidth=1, linestyle=":")
        ax.text(LONG_LOAD_S * 1.08, 0.02, "10 s", color="0.3")
        ax.set_xscale("log")
        log_seconds_axis(ax.xaxis)
        ax.set_xlabel("load time (s, log scale)")
        ax.set_title(
            f"{name}: {len(group):,} loads, {throttled.mean() if len(group) else 0:.0%} throttled"
        )
        ax.grid(True, which="major", alpha=0.3)
        if len(group) == 0:
            ax.set_xlim(0.1, 100)  # a log axis without data has no limits of its own
            message_panel(ax, "no loads to show in this period")
            continue
        ax.text(
            0.02,
            0.97,
            f"over 10 s: {_share_over(total):.1%} with policy\n"
            f"{'':>11}{_share_over(counterfactual):.1%} without",
            transform=ax.transAxes,
            va="top",
            family="monospace",
            fontsize=9,
            bbox={"facecolor": "white", "edgecolor": "0.8", "alpha": 0.9},
        )
    # One legend for all panels, under them: inside a panel it would hide a curve.
    lines = {str(line.get_label()): line for ax in axes for line in ax.get_lines()}
    lines = {label: line for label, line in lines.items() if not label.startswith("_")}
    if lines:
        fig.legend(list(lines.values()), list(lines), loc="outside lower center", ncols=4)
    for ax in axes[len(classes) :]:
        ax.set_visible(False)
    for ax in axes[::columns]:
        ax.set_ylabel("share of loads finished")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    prefix = f"{scenario.name}: " if scenario is not None else ""
    period = window_label(window, scenario)
    fig.suptitle(f"{prefix}how long {what} took, with and without the policy ({period})")
    return fig


def _bin_seconds(span_s: float) -> float:
    """Days for a timeline of weeks, hours for one of a day; at least ~8 bins."""
    for width_s in (86400.0, 6 * 3600.0, 3600.0, 600.0, 60.0):
        if span_s / width_s >= 8:
            return width_s
    return max(span_s / 8, 1.0)


def _dates(scenario: Scenario, seconds: npt.NDArray[np.floating[Any]]) -> list[datetime]:
    return [scenario.datetime_at(float(s)) for s in seconds]


def latency_timeline(
    loads: pd.DataFrame,
    change_times: Sequence[tuple[float, str]],
    scenario: Scenario,
) -> Figure:
    """Median load time per day (per hour on short runs) and device class, with the band
    from the 10th to the 90th percentile, the counterfactual median dashed, and the policy
    changes marked and listed under the plot."""
    frame, what = story_loads(loads, ["start_s", "total_s", "counterfactual_total_s"])
    classes = class_names(frame) or ["(no loads)"]
    span_s = max(scenario.horizon_s, float(frame["start_s"].max()) if len(frame) else 0.0)
    width_s = _bin_seconds(span_s)
    bins = max(1, math.ceil(span_s / width_s))
    class_index = {name: i for i, name in enumerate(classes)}
    codes = frame["device_class"].map(class_index).to_numpy(dtype=float)
    bin_index = np.clip(frame["start_s"].to_numpy() // width_s, 0, bins - 1)
    groups = np.nan_to_num(codes * bins + bin_index, nan=-1).astype(np.int64)
    keep = groups >= 0
    n_groups = len(classes) * bins
    with_policy = grouped_quantiles(
        groups[keep], frame["total_s"].to_numpy(dtype=float)[keep], n_groups, (0.1, 0.5, 0.9)
    )
    without = grouped_quantiles(
        groups[keep],
        frame["counterfactual_total_s"].to_numpy(dtype=float)[keep],
        n_groups,
        (0.5,),
    )
    counts = np.bincount(groups[keep], minlength=n_groups)[:n_groups]
    sparse = counts < _MIN_LOADS_PER_BIN
    with_policy[sparse] = np.nan
    without[sparse] = np.nan
    centres = _dates(scenario, (np.arange(bins) + 0.5) * width_s)
    marks = change_marks(change_times)

    fig = new_figure(12.0, 1.2 + 2.8 * len(classes))
    axes = fig.subplots(len(classes), 1, squeeze=False, sharex=True).ravel()
    for ax, name in zip(axes, classes, strict=True):
        rows = slice(class_index[name] * bins, (class_index[name] + 1) * bins)
        low, median, high = clip_for_log(with_policy[rows]).T
        ax.fill_between(
            centres,
            low,
            high,
            color=POLICY_COLOUR,
            alpha=0.15,
            linewidth=0,
            label="10–90 % of loads, with policy",
        )
        ax.plot(centres, median, color=POLICY_COLOUR, linewidth=2, label="median, with policy")
        ax.plot(
            centres,
            clip_for_log(without[rows, 0]),
            color=COUNTERFACTUAL_COLOUR,
            linestyle="--",
            linewidth=1.6,
            label="median, no policy",
        )
        for mark in marks:
            at = scenario.datetime_at(mark.at_s)
            ax.axvline(at, color="0.35", linewidth=1, linestyle=":")
            ax.annotate(
                str(mark.number),
                (at, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                color="0.25",
                fontsize=9,
            )
        ax.set_yscale("log")
        log_seconds_axis(ax.yaxis)
        ax.set_ylabel("load time (s, log scale)")
        ax.set_title(f"{name}", loc="left", fontweight="bold")
        ax.grid(True, which="major", alpha=0.3)
        if np.all(np.isnan(median)):
            ax.set_ylim(0.1, 100)  # a log axis without data has no limits of its own
            message_panel(ax, "no loads to show")
    axes[0].legend(loc="upper right", fontsize=9, ncols=3)
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    axes[-1].xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
    axes[-1].xaxis.set_major_formatter(formatter)
    axes[-1].set_xlim(scenario.datetime_at(0.0), scenario.datetime_at(bins * width_s))
    axes[-1].set_xlabel(f"date (UTC), one point per {_bin_name(width_s)}")
    if marks:
        handles = [Line2D([], [], linestyle="") for _ in marks]
        labels = [f"{m.number}  {time_label(m.at_s, scenario)}: {m.text}" for m in marks]
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(2, len(marks)),
            fontsize=9,
            handlelength=0,
            title="policy changes",
            frameon=False,
        )
    fig.suptitle(f"{scenario.name}: {what} over time, median load time per {_bin_name(width_s)}")
    return fig


def _bin_name(width_s: float) -> str:
    names = {86400.0: "day", 6 * 3600.0: "6 hours", 3600.0: "hour", 600.0: "10 minutes"}
    return names.get(width_s, f"{width_s:g} s")
