"""An asyncio event loop in virtual time: the clock jumps to the next timer.

A real loop waits in ``select(timeout)`` until the next timer is due. This one asks the
selector only for what is ready *now* and then moves its clock forward by ``timeout``,
so ``await asyncio.sleep(3600)`` costs microseconds and a simulated day runs as fast as
its events allow. Ordinary asyncio code (tasks, futures, ``sleep``, ``wait_for``,
``gather``) runs unchanged; real I/O does not belong here.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["VirtualClockLoop", "run_in_virtual_time"]

T = TypeVar("T")
STUCK_AFTER_S = 5.0  # real seconds to wait for a thread before calling a run stuck


class _JumpingSelector(selectors.DefaultSelector):
    """Polls without waiting; a wait becomes a jump of the loop's clock."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualClockLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.loop is None:
            return super().select(timeout)
        if timeout is not None:
            # No syscall: nothing in virtual time waits on a file. Callbacks that other
            # threads add are in the loop's ready queue on its next turn anyway.
            self.loop.advance(timeout)
            return []
        # Nothing scheduled: only a thread (asyncio.to_thread) can still wake the loop.
        wait = STUCK_AFTER_S
        ready = super().select(wait)
        if not ready:
            raise RuntimeError(
                "virtual time: nothing is scheduled, the simulation is stuck"
                f" (no thread woke it within {wait:g} s of real time)"
            )
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """``loop.time()`` starts at ``start`` and moves only when everything is waiting."""

    def __init__(self, start: float = 0.0) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self._virtual_now = start

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._virtual_now += seconds


def run_in_virtual_time(main: Callable[[], Awaitable[T]], *, start: float = 0.0) -> T:
    """Run ``main()`` to completion on a fresh virtual-time loop (blocking).

    Inside a running loop (a notebook), call it in a thread:
    ``await asyncio.to_thread(run_in_virtual_time, main)``.
    """
    loop = VirtualClockLoop(start)
    try:

        async def wrapper() -> Any:
            return await main()

        return loop.run_until_complete(wrapper())  # type: ignore[no-any-return]
    finally:
        loop.close()
