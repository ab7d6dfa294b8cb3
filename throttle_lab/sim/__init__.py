"""Drivers in virtual time. For now: the packet-level model of one connection."""

from throttle_lab.sim._packet import FlowResult, FlowSpec, Throttle, simulate_flow

__all__ = ["FlowResult", "FlowSpec", "Throttle", "simulate_flow"]
