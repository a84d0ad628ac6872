"""``conftest.seeded`` really seeds numba's RNG (its docstring said so before it did)."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=False)
def _draw():
    return np.random.random()


def _first_draw_after_seed_0() -> float:
    return float(np.random.RandomState(0).random_sample())    # numba uses the same MT19937 seeding as numpy


def test_numba_rng_is_seeded_before_each_test_a():
    assert _draw() == _first_draw_after_seed_0()
    _draw()                                                     # advance the state: the next test must not see it


def test_numba_rng_is_seeded_before_each_test_b():
    assert _draw() == _first_draw_after_seed_0()
