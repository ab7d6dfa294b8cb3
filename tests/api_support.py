"""A tiny scenario and a coarse flow model shared by the API, sweep and notebook tests.

Tiny on purpose: two classes, one throttled and one control photo, three days, thirty
subscribers, and a flow model of 2x2x2 grid points, so that a run takes a fraction of a
second once the grids are built. Accuracy does not matter here; agreement does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY = """
[scenario]
name = "tiny"
start = 2021-03-09T00:00:00Z
horizon = "3d"
seed = 7

[population]
subscribers = 30

[population.classes.mobile]
share = 0.6
down = "8mbit"
up = "2mbit"
rtt = { dist = "uniform", low = "40ms", high = "80ms" }
loss = 0.005

[population.classes.fixed]
share = 0.4
down = "50mbit"
up = "20mbit"
rtt = "20ms"

[[workload.media]]
kind = "photo"
name = "twitter-photo"
hosts = { "pbs.twimg.com" = 1.0 }
size = { dist = "lognormal", median = "80KB", sigma = 0.4 }
per_subscriber_per_day = 6

[[workload.media]]
kind = "photo"
name = "control-photo"
hosts = { "sun9-1.userapi.com" = 1.0 }
size = { dist = "lognormal", median = "80KB", sigma = 0.4 }
per_subscriber_per_day = 3

[[policies]]
name = "throttle"
match = ["*.twimg.com"]
action = { kind = "police", rate = "140kbit", burst = "16KB" }

[policies.coverage.mobile]
fraction = 1.0
start = 2021-03-10T00:00:00Z

[policies.coverage.fixed]
fraction = 0.5
start = 2021-03-10T00:00:00Z
"""

COARSE = {"size_points": 2, "rtt_points": 2, "bandwidth_points": 2}


def write_tiny(folder: Path) -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY)
    return path


def coarse_options(cache_dir: Path) -> dict[str, Any]:
    return {**COARSE, "cache_dir": cache_dir}
