"""Shared fixtures: numba-side seeding, a no-progress environment, small real datasets."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("FFCV_SSL_NO_PROGRESS", "1")

pytest_plugins = ["slurm_support"]  # SLURM session fixture + slurm_executor (tests/slurm_support.py)


_NUMBA_SEED = []     # the compiled seeding function, built once per session


def _seed_numba(seed: int) -> None:
    """Seed numba's own ``np.random`` state of this thread: only compiled code can (numba keeps a separate
    generator that ``np.random.seed`` in Python never reaches). ``prange`` worker threads keep their own states."""
    if not _NUMBA_SEED:
        from numba import njit

        @njit(cache=False)
        def seed_in_numba(value):
            np.random.seed(value)

        _NUMBA_SEED.append(seed_in_numba)
    _NUMBA_SEED[0](seed)


@pytest.fixture(autouse=True)
def seeded():
    """Seed numpy, torch and numba's own RNG (see ``_seed_numba``) before every test."""
    np.random.seed(0)
    _seed_numba(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:  # pragma: no cover
        pass
    yield


@pytest.fixture(scope="session")
def digits_index():
    from dataset_writers.registry import get_reader

    spec = get_reader("digits")
    return {split: spec.read(None, split, spec.options()) for split in spec.splits}
