"""Nested static subsets: a prefix of one seeded permutation, so 50k ⊂ 125k ⊂ ... ⊂ 1M always hold.

The same function picks pretraining subsets (Cole et al. §3.1: 50k ... 1M images) and labelled budgets
for evaluation (10k ... 1M labels). Uniform by default; ``balanced`` interleaves per-class permutations
round-robin, so every prefix is as class-balanced as the class sizes allow, and still nested.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .errors import WriterError


def subset_order(labels: np.ndarray, seed: int, balanced: bool = False) -> np.ndarray:
    """The seeded order whose prefixes are the nested subsets (positions into ``labels``)."""
    labels = np.asarray(labels)
    n = len(labels)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EB5E7]))
    if not balanced:
        return rng.permutation(n)
    classes = np.unique(labels)
    class_order = rng.permutation(classes)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in class_order]
    # round r takes the r-th member of every class that still has one, classes in a fixed random order
    width = max((len(m) for m in per_class), default=0)
    grid = np.full((width, len(per_class)), -1, dtype=np.int64)
    for j, members in enumerate(per_class):
        grid[: len(members), j] = members
    flat = grid.reshape(-1)
    return flat[flat >= 0]


def nested_subset(labels: np.ndarray, n: int, seed: int, balanced: bool = False) -> np.ndarray:
    """Sorted positions of the ``n``-element subset; ``nested_subset(.., m) ⊂ nested_subset(.., n)`` for m <= n."""
    total = len(labels)
    if n <= 0:
        raise WriterError(f"--subset {n}: a subset needs at least one sample")
    if n > total:
        raise WriterError(f"--subset {n} is larger than the split ({total} samples); drop --subset or lower it")
    return np.sort(subset_order(labels, seed, balanced)[:n])


def subset_record(labels: np.ndarray, n: int, seed: int, balanced: bool = False,
                  ids: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """The manifest's ``subset`` entry: enough to regenerate the selection from the full split.

    ``of_ids_sha256`` fingerprints the full split the permutation ran over, so a reader that indexes a
    changed dataset (files added or skipped) is detected instead of silently giving a different "500k".
    """
    from .manifest import ids_digest

    record: Dict[str, Any] = {
        "n": int(n), "of": int(len(labels)), "seed": int(seed), "balanced": bool(balanced),
        "rule": "sorted prefix of one seeded permutation (dataset_writers.subsets.subset_order); "
                "smaller n with the same seed is always a subset",
    }
    if ids is not None:
        record["of_ids_sha256"] = ids_digest(np.asarray(ids))
    return record
