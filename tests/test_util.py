"""The shared helpers of ``ffcv_ssl.util`` against their references, and the one place they live."""
from __future__ import annotations

import hashlib
import os

import numpy as np

from ffcv_ssl import util


def test_file_sha256_matches_hashlib_across_chunks(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, size=(1 << 22) * 2 + 12345, dtype=np.uint8).tobytes()
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert util.file_sha256(path) == want
    assert util.file_sha256(str(path), chunk=1000) == want          # a block boundary anywhere gives the same digest
    (tmp_path / "empty").write_bytes(b"")
    assert util.file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_cpu_budget_is_the_affinity_mask():
    assert util.cpu_budget() == len(os.sched_getaffinity(0)) >= 1


def test_callers_use_the_one_implementation():
    from dataset_writers import beton, write

    assert beton.sha256_file is util.file_sha256
    assert write.default_workers() == util.cpu_budget()
