"""The embedded dataset: scikit-learn's 1,797 labelled handwritten digits, upscaled to small RGB images.

Real, labelled, and shipped inside scikit-learn, so the demo and the tests need no download. A two-level
hierarchy (``half``: digits 0-4 vs 5-9, then the digit) exercises hierarchical evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..errors import WriterError
from ..records import ArrayImages, SplitIndex
from ..registry import register_reader


@dataclass
class DigitsOptions:
    size: int = 32                 # side of the upscaled images (bilinear from 8x8)
    test_fraction: float = 0.2     # stratified train/test split
    split_seed: int = 0

    def validate(self) -> None:
        if not 8 <= self.size <= 512:
            raise WriterError(f"digits option size={self.size} must be between 8 and 512")
        if not 0.0 < self.test_fraction < 1.0:
            raise WriterError(f"digits option test_fraction={self.test_fraction} must be in (0, 1)")


def digits_images(size: int) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as (N, size, size, 3) uint8 (bright ink on black) and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    gray = np.clip(data.images * (255.0 / 16.0) + 0.5, 0, 255).astype(np.uint8)
    up = np.stack([np.asarray(Image.fromarray(g, "L").resize((size, size), Image.BILINEAR)) for g in gray])
    return np.repeat(up[..., None], 3, axis=3), data.target.astype(np.int64)


def split_positions(labels: np.ndarray, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Stratified, seeded split into sorted train/test positions."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        test.extend(rng.permutation(members)[: int(round(len(members) * test_fraction))])
    test = np.sort(np.asarray(test, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return {"train": train, "test": test}


@register_reader("digits", splits=("train", "test"), options=DigitsOptions,
                 summary="scikit-learn digits (embedded, 1,797 images, 10 classes)")
def read_digits(root: Optional[Path], split: str, opts: DigitsOptions) -> SplitIndex:
    """scikit-learn's digits; ``root`` is ignored (the data ship with scikit-learn)."""
    images, labels = digits_images(opts.size)
    pos = split_positions(labels, opts.test_fraction, opts.split_seed)[split]
    return SplitIndex(
        dataset="digits", split=split, ids=pos, labels=labels[pos],
        class_names=[str(d) for d in range(10)], source=ArrayImages(images[pos], name=f"digits/{split}"),
        id_kind="index in sklearn.datasets.load_digits()",
        levels={"half": (labels[pos] >= 5).astype(np.int64)}, level_names={"half": ["0-4", "5-9"]},
        options={"size": opts.size, "test_fraction": opts.test_fraction, "split_seed": opts.split_seed},
    )
