"""Shared fixtures: numba-side seeding, a no-progress environment, small real datasets."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("FFCV_SSL_NO_PROGRESS", "1")

pytest_plugins = ["slurm_support"]  # SLURM session fixture + slurm_executor (tests/slurm_support.py)


@pytest.fixture(autouse=True)
def seeded():
    """Seed numpy, torch and numba's own RNG (numba keeps per-thread state that Python's seed never reaches)."""
    np.random.seed(0)
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
