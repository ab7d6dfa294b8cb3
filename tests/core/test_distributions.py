"""Distributions draw what they claim, reproducibly, with the mean they report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from throttle_lab.core import Choice, Exponential, Fixed, LogNormal, Normal, Uniform

N = 100_000


def rng(seed: int = 12345) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_lognormal_median_and_mean():
    dist = LogNormal(median=400_000, sigma=0.7)
    draws = dist.sample(rng(), N)
    assert abs(np.median(draws) / 400_000 - 1) < 0.02
    assert abs(draws.mean() / dist.mean() - 1) < 0.02
    assert dist.mean() == pytest.approx(400_000 * math.exp(0.49 / 2))


def test_uniform_bounds_and_mean():
    draws = Uniform(0.04, 0.12).sample(rng(), N)
    assert draws.min() >= 0.04 and draws.max() < 0.12
    assert abs(draws.mean() - 0.08) < 0.001


def test_normal_is_clipped_at_its_minimum_and_mean_accounts_for_it():
    dist = Normal(mean_value=1.0, sd=2.0, minimum=0.5)
    draws = dist.sample(rng(), N)
    assert draws.min() == 0.5
    share_at_floor = (draws == 0.5).mean()
    assert abs(share_at_floor - 0.4013) < 0.01  # Phi((0.5 - 1) / 2)
    assert abs(draws.mean() - dist.mean()) < 0.02
    assert dist.mean() > 1.0  # clipping moves the mean up


def test_exponential_mean():
    draws = Exponential(0.25).sample(rng(), N)
    assert abs(draws.mean() - 0.25) < 0.005
    assert draws.min() >= 0


def test_choice_weights_and_mean():
    dist = Choice([1.0, 2.0, 10.0], weights=[3, 1, 0])
    draws = dist.sample(rng(), N)
    assert set(np.unique(draws)) == {1.0, 2.0}
    assert abs((draws == 1.0).mean() - 0.75) < 0.01
    assert dist.mean() == pytest.approx(1.25)
    assert Choice([5.0]).sample(rng(), 3).tolist() == [5.0, 5.0, 5.0]


def test_fixed_does_not_consume_randomness():
    a, b = rng(1), rng(1)
    assert Fixed(3.0).sample(a, 10).tolist() == [3.0] * 10
    assert a.random() == b.random()  # the stream of the other draws is unchanged


def test_same_seed_same_draws():
    dist = LogNormal(8e6, 0.6)
    assert np.array_equal(dist.sample(rng(7), 1000), dist.sample(rng(7), 1000))
    assert not np.array_equal(dist.sample(rng(7), 1000), dist.sample(rng(8), 1000))


@pytest.mark.parametrize(
    "make",
    [
        lambda: Uniform(2, 1),
        lambda: LogNormal(0, 1),
        lambda: LogNormal(1, -1),
        lambda: Normal(1, -1),
        lambda: Exponential(0),
        lambda: Choice([]),
        lambda: Choice([1, 2], [1]),
        lambda: Choice([1, 2], [0, 0]),
        lambda: Fixed(math.nan),
    ],
)
def test_bad_parameters_are_refused(make):
    with pytest.raises(ValueError):
        make()
