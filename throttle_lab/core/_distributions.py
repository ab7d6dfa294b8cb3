"""Distributions of population and workload values (access rates, RTTs, media sizes).

A scenario file describes, say, the downlink rate of mobile subscribers as
``{ dist = "lognormal", median = "8mbit", sigma = 0.6 }``; the scenario loader turns that
into one of these objects, in SI units (seconds, bytes, bit/s, probabilities), and the
engines draw from it with ``sample(rng, n)``: one numpy call for ``n`` values, so that a
population engine can draw a value per subscriber or per media load without a Python
call each. Randomness always comes in as a seeded :class:`numpy.random.Generator`
(never global state), which keeps runs reproducible bit for bit.

``mean()`` is the exact mean of what ``sample`` draws (clipping included), so that
back-of-the-envelope numbers (expected load, expected bytes per day) agree with runs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "Choice",
    "Distribution",
    "Exponential",
    "Fixed",
    "LogNormal",
    "Normal",
    "Uniform",
]

FloatArray = npt.NDArray[np.float64]


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


class Distribution(ABC):
    """Something to draw ``n`` float values from, in SI units."""

    @abstractmethod
    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` independent draws as a float64 array of shape ``(n,)``."""

    @abstractmethod
    def mean(self) -> float:
        """The exact mean of what :meth:`sample` draws."""


@dataclass(frozen=True, slots=True)
class Fixed(Distribution):
    """Always ``value`` (what a plain number in a scenario file means)."""

    value: float

    def __post_init__(self) -> None:
        _check_finite("value", self.value)

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        # No draw from rng: a fixed value must not shift the random stream of the others.
        return np.full(n, float(self.value), dtype=np.float64)

    def mean(self) -> float:
        return float(self.value)


@dataclass(frozen=True, slots=True)
class Uniform(Distribution):
    """Uniform on ``[low, high)``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        _check_finite("low", self.low)
        _check_finite("high", self.high)
        if self.high < self.low:
            raise ValueError(f"high ({self.high!r}) must not be below low ({self.low!r})")

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        return rng.uniform(self.low, self.high, size=n)

    def mean(self) -> float:
        return (self.low + self.high) / 2.0


@dataclass(frozen=True, slots=True)
class LogNormal(Distribution):
    """``median * exp(sigma * Z)``, Z standard normal.

    Parametrised by the median rather than by ``mu`` because the median is what people
    quote ("a typical photo is 400 KB") and it carries the unit; ``sigma`` is unitless.
    """

    median: float
    sigma: float

    def __post_init__(self) -> None:
        _check_finite("median", self.median)
        _check_finite("sigma", self.sigma)
        if self.median <= 0:
            raise ValueError(f"median must be positive, got {self.median!r}")
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma!r}")

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        return rng.lognormal(math.log(self.median), self.sigma, size=n)

    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2.0)


@dataclass(frozen=True, slots=True)
class Normal(Distribution):
    """Normal(``mean_value``, ``sd``), with draws below ``minimum`` set to ``minimum``.

    Clipped rather than truncated (redrawn): cheaper, and the probability mass below the
    minimum visibly piles up at it, which is honest about what the parameters say.
    """

    mean_value: float
    sd: float
    minimum: float = 0.0

    def __post_init__(self) -> None:
        for name in ("mean_value", "sd", "minimum"):
            _check_finite(name, getattr(self, name))
        if self.sd < 0:
            raise ValueError(f"sd must be >= 0, got {self.sd!r}")

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        return np.maximum(rng.normal(self.mean_value, self.sd, size=n), self.minimum)

    def mean(self) -> float:
        # E[max(X, m)] = m*Phi(a) + mu*(1 - Phi(a)) + sd*phi(a), a = (m - mu) / sd.
        if self.sd == 0:
            return max(self.mean_value, self.minimum)
        a = (self.minimum - self.mean_value) / self.sd
        cdf = 0.5 * (1.0 + math.erf(a / math.sqrt(2.0)))
        pdf = math.exp(-a * a / 2.0) / math.sqrt(2.0 * math.pi)
        return self.minimum * cdf + self.mean_value * (1.0 - cdf) + self.sd * pdf


@dataclass(frozen=True, slots=True)
class Exponential(Distribution):
    """Exponential with the given mean (inter-arrival times, think times)."""

    mean_value: float

    def __post_init__(self) -> None:
        _check_finite("mean_value", self.mean_value)
        if self.mean_value <= 0:
            raise ValueError(f"mean must be positive, got {self.mean_value!r}")

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        return rng.exponential(self.mean_value, size=n)

    def mean(self) -> float:
        return self.mean_value


@dataclass(frozen=True, slots=True)
class Choice(Distribution):
    """One of ``values``, drawn with probabilities proportional to ``weights``.

    ``weights`` default to equal; they need not sum to 1 (they are normalised), which
    lets a scenario file say ``weights = [3, 1]``.
    """

    values: tuple[float, ...]
    weights: tuple[float, ...] = ()
    _probabilities: FloatArray = field(init=False, repr=False, compare=False)

    def __init__(self, values: Sequence[float], weights: Sequence[float] = ()) -> None:
        values_t = tuple(float(v) for v in values)
        weights_t = tuple(float(w) for w in weights) or (1.0,) * len(values_t)
        if not values_t:
            raise ValueError("choice needs at least one value")
        if len(weights_t) != len(values_t):
            raise ValueError(f"{len(weights_t)} weights for {len(values_t)} values")
        for v in values_t:
            _check_finite("value", v)
        if any(not math.isfinite(w) or w < 0 for w in weights_t) or sum(weights_t) <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        total = sum(weights_t)
        object.__setattr__(self, "values", values_t)
        object.__setattr__(self, "weights", weights_t)
        object.__setattr__(
            self, "_probabilities", np.array([w / total for w in weights_t], dtype=np.float64)
        )

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        picks = rng.choice(len(self.values), size=n, p=self._probabilities)
        return np.asarray(self.values, dtype=np.float64)[picks]

    def mean(self) -> float:
        return float(np.dot(np.asarray(self.values, dtype=np.float64), self._probabilities))
