"""The sans-I/O core: the one policy model every driver uses.

No asyncio, sockets, ssl, clocks or global randomness here (a test scans the imports):
every time-dependent call takes ``now=`` and randomness comes in as a seeded generator.
The simulator, the emulators and the probes' analysis all drive these objects.
"""

from throttle_lab.core._bucket import Policer, Shaper, TokenBucket

__all__ = ["Policer", "Shaper", "TokenBucket"]
