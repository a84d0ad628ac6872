"""Label noise for supervised pretraining runs: symmetric flips, deterministic per sample id, recorded.

Label corruptions draw their randomness from ``uniforms(key, ids, stream)``: a counter-based generator
(SplitMix64's output function applied to ``key + id * golden``) that gives each sample id its own uniform
numbers in one vectorised pass. A sample's draw depends only on (corruption, parameters, seed, id), like
the pixel corruptions' per-image ``Generator``s, without building millions of ``Generator`` objects.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Dict

import numpy as np

from ffcv_ssl.splitmix import GOLDEN, INV53, mix64_array

from ..errors import WriterError
from .registry import Params, param, register_corruption

Uniforms = Callable[[int], np.ndarray]


def stable_hash64(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same on every machine and Python run (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def uniforms(key: int, ids: np.ndarray, stream: int) -> np.ndarray:
    """One float64 in [0, 1) per id, a pure function of (key, stream, id): SplitMix64 at position ``id``."""
    base = np.uint64(stable_hash64(f"{key}/{stream}"))
    z = mix64_array(np.asarray(ids, dtype=np.int64).astype(np.uint64) * GOLDEN + base)   # wraps mod 2^64
    return (z >> np.uint64(11)).astype(np.float64) * INV53


@dataclass(frozen=True)
class LabelNoiseParams(Params):
    rate: float = param(0.2, lo=0.0, hi=1.0, doc="fraction of labels replaced by a different class; 0.2 is the "
                                                 "mildest symmetric level of the noisy-label literature")


@register_corruption("label_noise", params=LabelNoiseParams, kind="label", group="label")
def label_noise(labels: np.ndarray, num_classes: int, params: LabelNoiseParams, draws: Uniforms) -> np.ndarray:
    """Symmetric noise: with probability ``rate`` a label becomes one of the OTHER classes, uniformly.

    ``rate`` is the real fraction of changed labels (some papers draw from all classes, which changes only
    ``rate * (C - 1) / C``).
    """
    if params.rate > 0 and num_classes < 2:
        raise WriterError(f"label_noise: rate={params.rate:g} needs at least 2 classes, the dataset has "
                          f"{num_classes}")
    flip = draws(0) < params.rate
    other = np.minimum((draws(1) * (num_classes - 1)).astype(np.int64), max(num_classes - 2, 0))
    other = other + (other >= labels)          # skip the sample's own class: uniform over the C - 1 others
    return np.where(flip, other, labels)


def label_noise_record(ids: np.ndarray, original: np.ndarray, noisy: np.ndarray) -> Dict[str, Any]:
    """The manifest's per-sample list of changed labels, as columns (compact JSON for ~10^5 entries).

    Returns:
        ``{"num_samples", "num_changed", "fraction_changed", "ids", "original", "noisy"}``; the last three
        are aligned lists over the changed samples only, in the order of ``ids``.
    """
    ids, original, noisy = (np.asarray(a, dtype=np.int64) for a in (ids, original, noisy))
    if not (ids.shape == original.shape == noisy.shape):
        raise ValueError(f"ids {ids.shape}, original {original.shape} and noisy {noisy.shape} must align")
    changed = original != noisy
    return {"num_samples": int(len(ids)), "num_changed": int(changed.sum()),
            "fraction_changed": round(float(changed.mean()) if len(ids) else 0.0, 6),
            "ids": ids[changed].tolist(), "original": original[changed].tolist(), "noisy": noisy[changed].tolist()}
