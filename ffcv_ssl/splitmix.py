"""SplitMix64 (Steele, Lea & Flood, 2014): the constants and finaliser behind every counter-based draw.

Two generators share it: the loader's kernels (``ops/_rng.py``, numba: one draw per (seed, epoch, sample,
view, counter)) and the label corruptions (``dataset_writers/corruptions/labels.py``, numpy: one draw per
sample id in a vectorised pass). A draw is a pure function of its key, so it depends on no batch layout,
worker count or process rank. The constants live here once; numba freezes them into compiled code.
"""
import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)     # 2^64 / golden ratio: the Weyl-sequence increment
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
INV53 = 1.0 / 9007199254740992.0           # 2**-53: the top 53 bits of a uint64 as a double in [0, 1)


def mix64_array(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser on a uint64 array (a bijective avalanche; wraps mod 2^64 on purpose)."""
    z = (z ^ (z >> np.uint64(30))) * M1
    z = (z ^ (z >> np.uint64(27))) * M2
    return z ^ (z >> np.uint64(31))
