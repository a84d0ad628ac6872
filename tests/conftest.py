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


@pytest.fixture
def mount_tmpfs(tmp_path):
    """``mount_tmpfs("size=96k[,ro]")`` -> a fresh tmpfs under ``tmp_path`` (a real full disk or read-only file
    system for the fault tests); skips with the reason where mounting is impossible; unmounted after the test."""
    import shutil
    import subprocess

    mounted = []

    def mount(options: str):
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root and mount(8)")
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True,
                             text=True)
        if res.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode}); needs root with "
                        "CAP_SYS_ADMIN")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)
