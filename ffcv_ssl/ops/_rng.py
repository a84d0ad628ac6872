"""A counter-based RNG for compiled kernels: every random number is a pure function of its key.

Keys are built from (seed, epoch, sample id, view, draw index), so an augmentation depends on nothing
else: not on batch composition, worker count, thread scheduling, or which process of a DDP job loads
the sample. numba's own ``np.random`` keeps per-thread state that Python seeding never reaches;
this avoids it entirely. SplitMix64 finaliser (Steele et al., 2014).
"""
import numpy as np
from numba import njit

from ..splitmix import GOLDEN as _GOLDEN
from ..splitmix import INV53 as _INV53
from ..splitmix import M1 as _M1
from ..splitmix import M2 as _M2


@njit(cache=True, inline="always")
def mix64(z):
    """SplitMix64 finaliser: a bijective avalanche of a uint64."""
    z = np.uint64(z)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def derive_key(key, value):
    """Key of a sub-stream: ``derive_key(derive_key(seed, epoch), sample_id)`` etc."""
    return mix64(np.uint64(key) ^ mix64(np.uint64(value) + _GOLDEN))


@njit(cache=True, inline="always")
def uniform(key, counter):
    """The ``counter``-th U[0, 1) double of stream ``key``."""
    z = mix64(np.uint64(key) + (np.uint64(counter) + np.uint64(1)) * _GOLDEN)
    return np.float64(z >> np.uint64(11)) * _INV53
