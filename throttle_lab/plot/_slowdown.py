"""How much slower loads were, per network: where the policy reached and where it did not.

Coverage was decided per network (which ISPs had the boxes), so the network is the unit a
reader should see: a covered network shows a long red bar, an uncovered one a grey bar at
1x. The slowdown of a load is its time with the policy over its counterfactual time (the
same load, no policy); a bar is the median over the loads that started while the policy
was in force.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from throttle_lab.plot._common import (
    POLICY_COLOUR,
    class_names,
    grouped_quantiles,
    in_window,
    message_panel,
    new_figure,
    policy_window,
    story_loads,
    story_mask,
    window_label,
)

if TYPE_CHECKING:
    from throttle_lab.scenario import Scenario

__all__ = ["slowdown_by_network", "slowdown_table"]

_UNCOVERED_COLOUR = "0.65"


def slowdown_table(
    loads: pd.DataFrame, *, change_times: Sequence[tuple[float, str]] = ()
) -> pd.DataFrame:
    """Per device class and network: ``loads``, ``throttled_share``, ``slowdown_median``,
    for the photo and video loads that started within the policy window (all loads when
    there are no changes). What :func:`slowdown_by_network` draws, as numbers."""
    window = policy_window(change_times)
    frame, _ = story_loads(
        loads, ["network", "start_s", "total_s", "counterfactual_total_s", "throttled"]
    )
    frame = frame.loc[in_window(frame["start_s"], window)]
    classes = class_names(frame)
    network_codes, networks = pd.factorize(frame["network"], sort=True)
    class_codes = frame["device_class"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    groups = (class_codes.astype(np.int64) * len(networks) + network_codes).astype(np.int64)
    n_groups = len(classes) * len(networks)
    with np.errstate(divide="ignore", invalid="ignore"):
        slowdown = frame["total_s"].to_numpy(dtype=float) / frame[
            "counterfactual_total_s"
        ].to_numpy(dtype=float)
    slowdown[~np.isfinite(slowdown)] = np.nan  # no counterfactual, or a 0 s counterfactual
    medians = grouped_quantiles(groups, slowdown, n_groups, (0.5,))[:, 0]
    counts = np.bincount(groups, minlength=n_groups)[:n_groups]
    throttled = np.bincount(
        groups, weights=frame["throttled"].to_numpy(dtype=float), minlength=n_groups
    )[:n_groups]
    present = np.flatnonzero(counts)
    return pd.DataFrame(
        {
            "device_class": [classes[g // len(networks)] for g in present],
            "network": [str(networks[g % len(networks)]) for g in present],
            "loads": counts[present],
            "throttled_share": throttled[present] / counts[present],
            "slowdown_median": medians[present],
        }
    )


def slowdown_by_network(
    loads: pd.DataFrame,
    *,
    change_times: Sequence[tuple[float, str]] = (),
    scenario: Scenario | None = None,
) -> Figure:
    """Horizontal bars of the median slowdown per network, one panel per device class;
    red where the policy throttled some of the network's loads, grey where it reached
    none (the bar's label says which share was throttled)."""
    window = policy_window(change_times)
    table = slowdown_table(loads, change_times=change_times)
    _, what = story_mask(loads)
    classes = list(dict.fromkeys(table["device_class"])) or ["(no loads)"]
    sizes = [max(1, int((table["device_class"] == c).sum())) for c in classes]
    fig = new_figure(11.0, 1.4 + 0.42 * sum(sizes) + 0.5 * len(classes))
    axes = fig.subplots(
        len(classes), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": sizes}
    ).ravel()
    finite = table["slowdown_median"].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    right = max(2.0, float(finite.max()) if len(finite) else 1.0) * 1.35
    for ax, name in zip(axes, classes, strict=True):
        rows = table.loc[table["device_class"] == name].sort_values(
            ["slowdown_median", "network"], ascending=[True, False], na_position="first"
        )
        covered = rows["throttled_share"].to_numpy() > 0
        values = rows["slowdown_median"].to_numpy(dtype=float)
        colours = [POLICY_COLOUR if c else _UNCOVERED_COLOUR for c in covered]
        positions = np.arange(len(rows))
        ax.barh(positions, np.nan_to_num(values), color=colours, height=0.7)
        ax.set_yticks(positions, list(rows["network"]))
        for y, value, share in zip(positions, values, rows["throttled_share"], strict=True):
            text = "no counterfactual" if math.isnan(value) else f"×{value:.1f}"
            reach = f"{share:.0%} of loads throttled" if share > 0 else "not throttled"
            ax.text(
                (0 if math.isnan(value) else value) + right * 0.01,
                y,
                f"{text}  ({reach})",
                va="center",
                fontsize=9,
            )
        ax.axvline(1.0, color="0.2", linewidth=1)
        ax.set_title(name, loc="left", fontweight="bold")
        ax.set_xlim(0, right)
        ax.set_ylim(-0.6, max(len(rows), 1) - 0.4)
        ax.grid(True, axis="x", alpha=0.3)
        if rows.empty:
            message_panel(ax, "no loads to show in this period")
    axes[-1].set_xlabel("slowdown: median of (load time with policy ÷ load time without)")
    fig.legend(
        [Patch(color=POLICY_COLOUR), Patch(color=_UNCOVERED_COLOUR)],
        ["network reached by the policy", "network not reached"],
        loc="outside lower center",
        ncols=2,
        frameon=False,
    )
    prefix = f"{scenario.name}: " if scenario is not None else ""
    fig.suptitle(f"{prefix}slowdown of {what} per network ({window_label(window, scenario)})")
    return fig
