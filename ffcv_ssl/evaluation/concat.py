"""Concatenated representations: features of two (or more) checkpoints side by side (Cole et al. 2022, Table 3).

The view is lazy: indexing it reads the asked rows from each memory-mapped cache and concatenates only
those, so a probe over ``ConcatFeatures`` never holds either cache whole in RAM. Rows must be the same
samples in the same order, which the beton's sample ids prove.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np

from .cache import CacheError, FeatureCache

_CHECK_ROWS = 1 << 20


class ConcatFeatures:
    """``(N, sum of widths)`` float16 view over row-aligned feature matrices; ``x[rows]`` returns an ndarray."""

    def __init__(self, parts: Sequence[Any]):
        if len(parts) < 2:
            raise CacheError("concatenation needs at least two feature matrices")
        n = {int(p.shape[0]) for p in parts}
        if len(n) != 1:
            raise CacheError(f"cannot concatenate features with different sample counts {sorted(n)}")
        self.parts = list(parts)
        self.shape = (n.pop(), sum(int(p.shape[1]) for p in parts))
        self.dtype = np.dtype(np.float16)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, tuple):
            raise TypeError("ConcatFeatures supports row indexing only (x[rows]); take columns afterwards")
        blocks = [np.asarray(p[rows], dtype=np.float16) for p in self.parts]
        return np.concatenate(blocks, axis=-1)


class ConcatenatedCache:
    """Several caches of the same beton as one: concatenated features, the shared labels, ids and levels.

    Offers what probes read from a ``FeatureCache`` (``features``, ``labels``, ``ids``, ``levels``,
    ``label_array``, ``count``, ``width``, ``num_classes``), plus ``parts`` for provenance.
    """

    def __init__(self, parts: Sequence[FeatureCache]):
        self.parts = list(parts)
        first = self.parts[0]
        self.features = ConcatFeatures([c.features for c in self.parts])
        self.labels, self.ids, self.levels = first.labels, first.ids, first.levels

    @property
    def count(self) -> int:
        return self.features.shape[0]

    @property
    def width(self) -> int:
        return self.features.shape[1]

    @property
    def num_classes(self):
        return self.parts[0].num_classes

    @property
    def level_names(self) -> List[str]:
        return self.parts[0].level_names

    def label_array(self, level: str = "label") -> np.ndarray:
        return self.parts[0].label_array(level)

    def representation(self) -> List[Dict[str, Any]]:
        """One entry per concatenated backbone (see ``check_same_representation``)."""
        return [r for c in self.parts for r in c.representation()]

    def __repr__(self) -> str:
        return f"ConcatenatedCache({[str(c.directory) for c in self.parts]})"

    def describe(self) -> List[Dict[str, Any]]:
        """One entry per part: directory, checkpoint hash, arch, width (for ``Results.extra``)."""
        return [{"cache": str(c.directory), "checkpoint_sha256": c.manifest.get("checkpoint_sha256"),
                 "arch": c.arch, "width": c.width} for c in self.parts]


def _first_difference(a: np.ndarray, b: np.ndarray) -> int:
    """Row of the first difference between two equal-length arrays (-1 if none), compared in chunks."""
    for start in range(0, len(a), _CHECK_ROWS):
        diff = np.flatnonzero(np.asarray(a[start:start + _CHECK_ROWS]) != np.asarray(b[start:start + _CHECK_ROWS]))
        if len(diff):
            return start + int(diff[0])
    return -1


def concat_caches(*caches: FeatureCache) -> ConcatenatedCache:
    """Concatenate caches extracted from the same samples; mismatched samples are a one-line error, before any work."""
    if len(caches) < 2:
        raise CacheError("concatenation needs at least two feature caches")
    first = caches[0]
    for other in caches[1:]:
        where = f"cannot concatenate {first.directory} and {other.directory}"
        if other.count != first.count:
            raise CacheError(f"{where}: {first.count} vs {other.count} samples; extract both from the same beton")
        row = _first_difference(first.ids, other.ids)
        if row >= 0:
            raise CacheError(f"{where}: sample ids differ (first at row {row}: {int(first.ids[row])} vs "
                             f"{int(other.ids[row])}); extract both from the same beton")
        row = _first_difference(first.labels, other.labels)
        if row >= 0:
            raise CacheError(f"{where}: labels differ at row {row} although the ids match; re-extract both")
    return ConcatenatedCache(caches)
