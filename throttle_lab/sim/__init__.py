"""Drivers in virtual time: the packet-level model of one connection, the flow-level
model calibrated on it, and the population engines."""

from throttle_lab.sim._flowmodel import FlowModel, ThrottleConfig, default_cache_dir
from throttle_lab.sim._packet import FlowResult, FlowSpec, Throttle, simulate_flow
from throttle_lab.sim._run import ENGINES, RunResult, run_scenario

__all__ = [
    "ENGINES",
    "FlowModel",
    "FlowResult",
    "FlowSpec",
    "RunResult",
    "Throttle",
    "ThrottleConfig",
    "default_cache_dir",
    "run_scenario",
    "simulate_flow",
]
