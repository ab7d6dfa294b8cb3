"""What one throttled load looks like from the inside: throughput over time.

A policer shows itself as bursts and silences (the bucket's 16 KB pass, then drops, then a
retransmission timeout) averaging out near the policed rate; that pattern, not the total,
is what tells policing from slow networks. The trace comes from the packet-level model
(``RunResult.sample_trace``): one load per device class, cumulative bytes at each segment's
arrival, turned here into a sliding-window rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from throttle_lab.plot._common import POLICY_COLOUR, FloatArray, message_panel, new_figure
from throttle_lab.units import format_rate, format_size

if TYPE_CHECKING:
    from throttle_lab.sim import FlowResult, RunResult

__all__ = ["throughput_series", "throughput_traces"]

_WINDOW_S = 1.0  # long enough to average over a bucket refill, short enough to show stalls
_POINTS = 1500  # samples of the rate curve, whatever the length of the load


def throughput_series(
    samples: Sequence[tuple[float, int]], *, window_s: float = _WINDOW_S, end_s: float | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(times_s, rate_bps, cumulative_bytes)`` on an even grid from 0 to ``end_s``.

    ``rate_bps`` at time t is the bytes that arrived in ``(t - window_s, t]`` times 8 over
    ``window_s`` (before t = window_s the window reaches back before the load started, when
    nothing arrived: the curve ramps up, it does not spike). Empty samples give zeros.
    """
    arrival = np.array([t for t, _ in samples], dtype=float)
    received = np.array([b for _, b in samples], dtype=float)
    last = float(arrival[-1]) if len(arrival) else 0.0
    end = max(end_s if end_s is not None else last, window_s)
    times = np.linspace(0.0, end, _POINTS)

    def cumulative(at: FloatArray) -> FloatArray:
        index = np.searchsorted(arrival, at, side="right") - 1
        return (
            np.where(index >= 0, received[np.maximum(index, 0)], 0.0)
            if len(arrival)
            else (np.zeros_like(at))
        )

    now = cumulative(times)
    rate = (now - cumulative(times - window_s)) * 8.0 / window_s
    return times, rate, now


def _title(name: str, trace: FlowResult) -> str:
    spec = trace.spec
    link = f", {format_rate(spec.bandwidth_bps)} access" if spec.bandwidth_bps else ""
    return (
        f"{name}: one {format_size(spec.size_bytes)} load, RTT {spec.rtt_s * 1000:.0f} ms{link}:"
        f" {trace.total_s:.1f} s ({trace.drops} drops, {trace.timeouts} timeouts)"
    )


def throughput_traces(result: RunResult) -> Figure:
    """One panel per device class: the throughput of one throttled load (kbit/s, 1 s
    sliding window), its cumulative bytes (right axis) and the policed rate."""
    classes = list(result.scenario.classes)
    fig = new_figure(11.0, 1.0 + 3.0 * max(len(classes), 1))
    axes = fig.subplots(max(len(classes), 1), 1, squeeze=False).ravel()
    for ax, name in zip(axes, classes or ["(no classes)"], strict=True):
        ax.set_xlabel("time since the load started (s)")
        ax.set_ylabel("throughput (kbit/s)")
        trace = result.sample_trace(name) if classes else None
        if trace is None:
            ax.set_title(f"{name}: no throttled load", loc="left")
            message_panel(ax, "the policy did not throttle a load of this class")
            continue
        end_s = max(trace.total_s, _WINDOW_S)
        times, rate_bps, received = throughput_series(trace.samples, end_s=end_s)
        ax.plot(
            times,
            rate_bps / 1000,
            color=POLICY_COLOUR,
            linewidth=1.4,
            label=f"throughput ({_WINDOW_S:g} s window)",
        )
        handles: list[Line2D] = []
        throttle = trace.spec.throttle
        if throttle is not None:
            handles.append(
                ax.axhline(
                    throttle.rate_bps / 1000,
                    color="black",
                    linestyle="--",
                    linewidth=1.2,
                    label=f"{throttle.kind}d at "
                    f"{format_rate(throttle.rate_bps)}, "
                    f"{format_size(throttle.burst_bytes)} bucket",
                )
            )
        bytes_axis = ax.twinx()
        bytes_axis.plot(
            times,
            received / 1000,
            color="0.45",
            linewidth=1.2,
            linestyle=":",
            label="received (KB, right axis)",
        )
        bytes_axis.set_ylabel("received (KB)")
        bytes_axis.set_ylim(0, max(trace.spec.size_bytes / 1000 * 1.05, 1.0))
        peak = float(rate_bps.max()) / 1000 if len(rate_bps) else 0.0
        ceiling = max(peak, throttle.rate_bps / 1000 if throttle else 0.0)
        ax.set_ylim(0, max(ceiling * 1.15, 1.0))
        ax.set_xlim(0, end_s if math.isfinite(end_s) else 1.0)
        ax.set_title(_title(name, trace), loc="left")
        ax.grid(True, alpha=0.3)
        lines = [*ax.get_lines()[:1], *handles, *bytes_axis.get_lines()]
        ax.legend(lines, [str(line.get_label()) for line in lines], loc="lower right", fontsize=9)
    fig.suptitle(f"{result.scenario.name}: throughput of one throttled load per device class")
    return fig
