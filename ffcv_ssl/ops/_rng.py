"""A counter-based RNG for compiled kernels: every random number is a pure function of its key.

Keys are built from (seed, epoch, sample id, view, draw index), so an augmentation depends on nothing
else: not on batch composition, worker count, thread scheduling, or which process of a DDP job loads
the sample. numba's own ``np.random`` keeps per-thread state that Python seeding never reaches;
this avoids it entirely. SplitMix64 finaliser (Steele et al., 2014).
"""
import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


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
