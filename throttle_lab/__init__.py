"""throttle_lab: simulate, emulate and measure SNI-triggered throttling.

The public API grows here; see README.md.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
