"""Emulation: real sockets and real kernels driving the same core policy objects.

- :mod:`throttle_lab.emu.proxy` (with :mod:`throttle_lab.emu.origin`): the userspace
  tier, no privileges needed: an SNI-aware proxy on loopback that paces (it cannot drop
  inside a TCP stream), resets or blackholes, and an HTTPS origin for any host name.
- :mod:`throttle_lab.emu.testbed`: the kernel testbed (root, Linux): namespaces, a
  userspace middlebox that polices per packet or hands off to ``tbf``, and real Linux
  TCP at both ends. It is the reference the packet model is measured against
  (``benchmarks/fidelity.py``).

Subpackages are imported on demand: importing ``throttle_lab.emu`` costs nothing and
needs no privileges.
"""

__all__: list[str] = []
