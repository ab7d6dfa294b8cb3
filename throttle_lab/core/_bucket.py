"""Token buckets, and the two things censors build from them: a policer and a shaper.

Both follow Flach et al. (SIGCOMM 2016): a bucket of ``burst_bytes`` tokens refilled at
``rate_bps / 8`` bytes per second. A *policer* drops a packet that finds too few tokens
(no queue, so no added delay: loss bursts without RTT growth). A *shaper* makes it wait
in a byte-limited queue until there are enough tokens, and drops only when that queue is
full (a smooth rate with RTT growth). Buckets start full, as Linux's do.

Sans-I/O: every time-dependent call takes ``now`` (seconds, any monotonic origin).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

__all__ = ["Policer", "Shaper", "ShaperVerdict", "TokenBucket"]

T = TypeVar("T")
ShaperVerdict = Literal["sent", "queued", "dropped"]


class TokenBucket:
    """``burst_bytes`` tokens, refilled at ``rate_bps / 8`` bytes per second.

    Over any interval of length ``t`` it grants at most ``burst_bytes + rate_bps/8 * t``
    bytes (a property test checks this).
    """

    __slots__ = ("_last", "_tokens", "burst_bytes", "rate_bps")

    def __init__(self, rate_bps: float, burst_bytes: int, *, now: float = 0.0) -> None:
        if rate_bps <= 0:
            raise ValueError(f"rate_bps must be positive, got {rate_bps!r}")
        if burst_bytes <= 0:
            raise ValueError(f"burst_bytes must be positive, got {burst_bytes!r}")
        self.rate_bps = float(rate_bps)
        self.burst_bytes = int(burst_bytes)
        self._tokens = float(burst_bytes)
        self._last = now

    def tokens(self, *, now: float) -> float:
        """Tokens (bytes) available at ``now``; time never runs backwards here."""
        if now > self._last:
            self._tokens = min(
                float(self.burst_bytes), self._tokens + (now - self._last) * self.rate_bps / 8.0
            )
            self._last = now
        return self._tokens

    def try_consume(self, size: int, *, now: float) -> bool:
        """Take ``size`` tokens if there are that many; say whether it did."""
        if self.tokens(now=now) >= size:
            self._tokens -= size
            return True
        return False

    def take(self, size: int, *, now: float) -> None:
        """Take ``size`` tokens unconditionally (a shaper's departure at the time
        ``time_until`` named; float rounding there must not turn into a free pass)."""
        self.tokens(now=now)
        self._tokens -= size

    def time_until(self, size: int, *, now: float) -> float:
        """Seconds from ``now`` until ``size`` tokens are there (0 if they already are).

        ``inf`` when ``size`` exceeds the bucket: such a packet never conforms.
        """
        if size > self.burst_bytes:
            return float("inf")
        missing = size - self.tokens(now=now)
        return max(0.0, missing * 8.0 / self.rate_bps)


class Policer:
    """Drops what finds too few tokens: Linux ``act_police`` with ``conform-exceed drop``."""

    __slots__ = ("bucket", "dropped_bytes", "dropped_packets", "passed_bytes")

    def __init__(self, rate_bps: float, burst_bytes: int, *, now: float = 0.0) -> None:
        self.bucket = TokenBucket(rate_bps, burst_bytes, now=now)
        self.passed_bytes = 0
        self.dropped_bytes = 0
        self.dropped_packets = 0

    def admit(self, size: int, *, now: float) -> bool:
        """True: forward the packet now. False: drop it."""
        if self.bucket.try_consume(size, now=now):
            self.passed_bytes += size
            return True
        self.dropped_bytes += size
        self.dropped_packets += 1
        return False


@dataclass(slots=True)
class _Queued(Generic[T]):
    item: T
    size: int
    arrival: float


@dataclass(slots=True)
class Shaper(Generic[T]):
    """A token bucket with a FIFO of at most ``queue_bytes`` waiting bytes (like ``tbf``).

    ``offer()`` an item; it either leaves at once, waits, or is dropped when the queue
    is full (``queue_bytes`` counts only what waits). The driver asks ``get_timer()`` when the head may leave and calls
    ``release(now=...)`` then, which yields the items that leave, each with its own exact
    departure time (so a driver that wakes late does not compress the schedule).
    """

    rate_bps: float
    burst_bytes: int
    queue_bytes: int
    now: float = 0.0
    bucket: TokenBucket = field(init=False)
    queued_bytes: int = field(init=False, default=0)
    dropped_packets: int = field(init=False, default=0)
    dropped_bytes: int = field(init=False, default=0)
    _queue: deque[_Queued[T]] = field(init=False, default_factory=deque)
    _last_departure: float = field(init=False, default=float("-inf"))

    def __post_init__(self) -> None:
        if self.queue_bytes < 0:
            raise ValueError(f"queue_bytes must be >= 0, got {self.queue_bytes!r}")
        self.bucket = TokenBucket(self.rate_bps, self.burst_bytes, now=self.now)

    def offer(self, item: T, size: int, *, now: float) -> ShaperVerdict:
        """Offer ``item`` of ``size`` bytes at ``now``.

        ``"sent"``: it conforms and leaves now (the driver forwards it at once);
        ``"queued"``: it waits, and ``release()`` will yield it; ``"dropped"``: the queue
        is full, or the item is larger than the bucket and could never conform.
        """
        if size > self.bucket.burst_bytes:
            verdict: ShaperVerdict = "dropped"
        elif not self._queue and self.bucket.try_consume(size, now=now):
            self._last_departure = now
            return "sent"
        elif self.queued_bytes + size <= self.queue_bytes:
            self._queue.append(_Queued(item, size, now))
            self.queued_bytes += size
            return "queued"
        else:
            verdict = "dropped"
        self.dropped_packets += 1
        self.dropped_bytes += size
        return verdict

    def _head_departure(self) -> float:
        head = self._queue[0]
        t = max(head.arrival, self._last_departure)
        return t + self.bucket.time_until(head.size, now=t)

    def get_timer(self) -> float | None:
        """When the head of the queue may leave (``None`` when the queue is empty)."""
        return self._head_departure() if self._queue else None

    def release(self, *, now: float) -> Iterator[tuple[float, T]]:
        """Yield ``(departure_time, item)`` for every item that may leave by ``now``."""
        while self._queue:
            ready_at = self._head_departure()
            if ready_at > now:
                return
            head = self._queue.popleft()
            self.bucket.take(head.size, now=ready_at)
            self.queued_bytes -= head.size
            self._last_departure = ready_at
            yield ready_at, head.item

    def __len__(self) -> int:
        return len(self._queue)
