"""Analysis on records only (never on live objects): summaries, comparisons, verdicts."""

from throttle_lab.analysis._summary import LONG_LOAD_S, assign_periods, summarise

__all__ = ["LONG_LOAD_S", "assign_periods", "summarise"]
