"""What every plot of a run shares: which loads tell the story, the policy window, fast
grouped quantiles, labels for policy changes and for moments in time, empty panels.

Plots work on the loads table (the record schema) and must stay fast on 10 M rows, so
everything here reduces columns to a few hundred numbers with numpy before matplotlib
sees them; no plot ever draws one marker per load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

if TYPE_CHECKING:
    from throttle_lab.scenario import Scenario

__all__ = [
    "COUNTERFACTUAL_COLOUR",
    "LONG_LOAD_S",
    "POLICY_COLOUR",
    "STORY_KINDS",
    "ChangeMark",
    "FloatArray",
    "change_marks",
    "class_names",
    "clip_for_log",
    "grouped_quantiles",
    "in_window",
    "log_seconds_axis",
    "message_panel",
    "new_figure",
    "policy_window",
    "sorted_quantiles",
    "story_loads",
    "story_mask",
    "time_label",
    "window_label",
]

FloatArray = npt.NDArray[np.float64]

# The RKN statement said photos and videos; users said they "took ages". These kinds are
# what the plots show by default (control photos included: they are photos too, and
# show that an unrelated CDN was untouched).
STORY_KINDS = ("photo", "video_segment")
LONG_LOAD_S = 10.0  # the same threshold as summary.json's share_over_10s
POLICY_COLOUR = "tab:red"
COUNTERFACTUAL_COLOUR = "tab:blue"
SHORTEST_PLOTTED_S = 1e-3  # log axes cannot show 0 s; nothing real loads faster than 1 ms


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure outside pyplot: nothing global is created, nothing needs closing."""
    return Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")


def message_panel(ax: Axes, message: str) -> None:
    """Say why a panel is empty instead of leaving a blank frame (axes stay labelled)."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.35")


def class_names(loads: pd.DataFrame) -> list[str]:
    """Device classes present, in the scenario's order when the column is categorical."""
    column = loads["device_class"]
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        counts = np.bincount(codes[codes >= 0], minlength=len(column.cat.categories))
        return [str(c) for c, n in zip(column.cat.categories, counts, strict=True) if n > 0]
    return [str(c) for c in pd.unique(column)]


def story_mask(loads: pd.DataFrame) -> tuple[npt.NDArray[np.bool_], str]:
    """Which loads the plots show (photos and videos), and how to call them in a title.

    A scenario without photos or videos falls back to all loads rather than to empty plots.
    """
    kind = loads["kind"]
    if isinstance(kind.dtype, pd.CategoricalDtype):
        # A lookup table over the category codes: ~10x faster than ``isin`` on 10 M rows.
        table = np.append(kind.cat.categories.isin(STORY_KINDS), False)  # code -1 (NaN): no
        mask = table[kind.cat.codes.to_numpy()]
    else:
        mask = kind.isin(STORY_KINDS).to_numpy(dtype=bool)
    if mask.any():
        return mask, "photo and video loads"
    return np.ones(len(loads), dtype=bool), "all loads"


def story_loads(loads: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """The story's loads (see :func:`story_mask`), only ``device_class`` and ``columns``."""
    mask, what = story_mask(loads)
    wanted = list(dict.fromkeys(["device_class", *columns]))
    return (loads.loc[mask, wanted] if not mask.all() else loads[wanted]), what


def policy_window(change_times: Sequence[tuple[float, str]]) -> tuple[float, float] | None:
    """From the first policy change to the last one (open-ended if there is only one).

    The first change is when throttling starts; the last one, in the scenarios we model,
    is when it is lifted for someone, so loads outside the window mostly show no policy.
    None when the run has no changes at all (then every load counts).
    """
    times = sorted({float(t) for t, _ in change_times})
    if not times:
        return None
    return (times[0], times[-1]) if len(times) > 1 else (times[0], math.inf)


def in_window(start_s: pd.Series, window: tuple[float, float] | None) -> npt.NDArray[np.bool_]:
    starts = start_s.to_numpy()
    if window is None:
        return np.ones(len(starts), dtype=bool)
    inside: npt.NDArray[np.bool_] = (starts >= window[0]) & (starts < window[1])
    return inside


def time_label(seconds: float, scenario: Scenario | None) -> str:
    """``'10 Mar'`` (``'11 Mar 08:00'`` off midnight); ``'day 4'`` without a scenario."""
    if scenario is None:
        return f"day {seconds / 86400:.3g}"
    moment = scenario.datetime_at(seconds)
    text = f"{moment.day} {moment:%b}"
    return text if (moment.hour, moment.minute) == (0, 0) else f"{text} {moment:%H:%M}"


def window_label(window: tuple[float, float] | None, scenario: Scenario | None) -> str:
    if window is None:
        return "whole run"
    start, end = window
    if math.isinf(end):
        return f"from {time_label(start, scenario)}"
    return f"{time_label(start, scenario)} – {time_label(end, scenario)}"


@dataclass(frozen=True, slots=True)
class ChangeMark:
    """Policy changes that happen at one moment, numbered for a plot's footnote."""

    number: int
    at_s: float
    text: str


def _shorten(label: str, prefix: str) -> str:
    """Drop the shared policy name and a trailing ``(source)``: a plot has little room."""
    text = label.removeprefix(prefix)
    if text.endswith(")") and " (" in text:
        text = text[: text.rindex(" (")]
    return text if len(text) <= 60 else text[:57] + "..."


def change_marks(change_times: Sequence[tuple[float, str]]) -> list[ChangeMark]:
    """One numbered mark per distinct change time, simultaneous changes joined."""
    labels = [label for _, label in change_times]
    prefixes = {label.split(": ", 1)[0] + ": " for label in labels if ": " in label}
    prefix = prefixes.pop() if len(prefixes) == 1 and all(": " in x for x in labels) else ""
    grouped: dict[float, list[str]] = {}
    for at_s, label in sorted(change_times, key=lambda mark: mark[0]):
        grouped.setdefault(float(at_s), []).append(_shorten(label, prefix))
    return [
        ChangeMark(number, at_s, "; ".join(texts))
        for number, (at_s, texts) in enumerate(grouped.items(), start=1)
    ]


def sorted_quantiles(ordered: FloatArray, qs: npt.ArrayLike) -> FloatArray:
    """Quantiles of an already sorted array, interpolated as ``numpy.quantile`` does.

    ``numpy.quantile`` with hundreds of levels partitions once per level; one sort and
    index arithmetic is several times faster on millions of values.
    """
    levels = np.asarray(qs, dtype=float)
    if len(ordered) == 0:
        return np.full(levels.shape, np.nan)
    position = (len(ordered) - 1) * levels
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, len(ordered) - 1)
    interpolated: FloatArray = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    return interpolated


def grouped_quantiles(
    groups: npt.NDArray[np.integer], values: FloatArray, n_groups: int, qs: Sequence[float]
) -> FloatArray:
    """Quantiles ``qs`` of ``values`` per group id in ``[0, n_groups)``: shape (groups, qs).

    Rows are brought together by group with one stable sort of the small integer ids (a
    radix sort for up to 65,536 groups), then each group's values are sorted on their own.
    That is several times faster than pandas' groupby-quantile or a lexsort on millions of
    rows. NaN values are ignored; empty groups give NaN.
    """
    keep = ~np.isnan(values)
    groups, values = groups[keep], values[keep]
    ids = groups.astype(np.uint16) if n_groups <= 1 << 16 else groups
    ordered = values[np.argsort(ids, kind="stable")]
    counts = np.bincount(groups, minlength=n_groups)[:n_groups]
    ends = np.cumsum(counts)
    result = np.full((n_groups, len(qs)), np.nan)
    for group in np.flatnonzero(counts):
        chunk = ordered[ends[group] - counts[group] : ends[group]]
        chunk.sort()
        result[group] = sorted_quantiles(chunk, qs)
    return result


def clip_for_log(seconds: FloatArray) -> FloatArray:
    """Durations as a log axis can show them (0 s becomes 1 ms)."""
    return np.maximum(seconds, SHORTEST_PLOTTED_S)


def log_seconds_axis(axis: Axis) -> None:
    """A log axis of durations labelled ``0.1, 1, 10, 100`` rather than ``10^-1 ...``:
    a reader compares seconds, not exponents."""
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
