"""``CorruptionChain``: an ordered list of corruptions and a seed, applied per sample, deterministically.

Sent to the writer's worker processes (it is a small frozen dataclass of names and numbers, so it
pickles), it corrupts image ``sample_id`` with Generators seeded only from (corruption name, canonical
parameters, seed, sample id). Pixels therefore do not depend on worker count, order or retries, and two
writes of the same chain give byte-identical betons.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from ..errors import WriterError
from .labels import stable_hash64, uniforms
from .spec import CorruptionSpec, SpecLike, parse_corruptions

_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class CorruptionChain:
    """Corruptions applied in order to every image (pixel kinds) or to the labels (label kinds).

    Attributes:
        specs: parsed corruptions, in the order they apply.
        seed: the run's corruption seed (recorded in the manifest); changes every random draw.
    """

    specs: Tuple[CorruptionSpec, ...] = ()
    seed: int = 0
    _keys: Tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        specs = tuple(self.specs)
        if not all(isinstance(s, CorruptionSpec) for s in specs):
            raise TypeError("CorruptionChain.specs must be CorruptionSpecs; use CorruptionChain.build(texts, seed)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**63:
            raise WriterError(f"corruption seed {self.seed!r} must be an integer in [0, 2^63)")
        object.__setattr__(self, "specs", specs)
        object.__setattr__(self, "seed", int(self.seed))
        # Key of each step: its canonical text, plus '#k' for the k-th repeat of an identical step, so a
        # step used once is keyed by (name, params) alone and a repeated one does not reuse its noise.
        seen: Counter = Counter()
        keys = []
        for spec in specs:
            text = spec.describe()
            keys.append(stable_hash64(text if seen[text] == 0 else f"{text}#{seen[text]}"))
            seen[text] += 1
        object.__setattr__(self, "_keys", tuple(keys))

    @classmethod
    def build(cls, texts: SpecLike | Sequence[SpecLike] = (), seed: int = 0) -> "CorruptionChain":
        """Parse (and validate) ``texts`` with ``parse_corruptions``; errors come before any work."""
        return cls(parse_corruptions(texts), seed)

    @classmethod
    def from_manifest(cls, entries: Sequence[Mapping[str, Any]]) -> "CorruptionChain":
        """Rebuild the chain recorded by ``manifest()`` (e.g. to show clean vs corrupted images)."""
        seeds = {int(e.get("seed", 0)) for e in entries}
        if len(seeds) > 1:
            raise WriterError(f"manifest corruption entries have different seeds {sorted(seeds)}; expected one")
        return cls(parse_corruptions(list(entries)), seeds.pop() if seeds else 0)

    # ---------------------------------------------------------------------------------------- identity
    @property
    def is_identity(self) -> bool:
        """No corruption at all (pixels and labels untouched)."""
        return not self.specs

    @property
    def has_pixels(self) -> bool:
        """Whether ``apply`` changes anything; pass the chain to the writer only then (it disables draft decode)."""
        return any(s.kind == "pixel" for s in self.specs)

    @property
    def has_labels(self) -> bool:
        return any(s.kind == "label" for s in self.specs)

    def describe(self) -> str:
        """Canonical id: steps' ``describe()`` joined by ``+`` (``none`` when empty); parses back to the chain."""
        return "+".join(s.describe() for s in self.specs) or "none"

    def slug(self) -> str:
        """File-name-safe id: ``resize-size256+jpeg-quality15`` (``clean`` when empty)."""
        return "+".join(s.slug() for s in self.specs) or "clean"

    def manifest(self) -> List[Dict[str, Any]]:
        """JSON-able list, one dict per step: name, params, id (canonical text), kind, seed."""
        return [{**s.to_json(), "seed": self.seed} for s in self.specs]

    # ------------------------------------------------------------------------------------------ pixels
    def rng(self, step: int, sample_id: int) -> np.random.Generator:
        """The Generator of step ``step`` for ``sample_id``: a function of (step key, seed, id) only."""
        entropy = [self._keys[step], self.seed, int(sample_id) & _U64]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    def apply(self, image: np.ndarray, sample_id: int) -> np.ndarray:
        """Pixel corruptions, in order, of RGB ``uint8`` HxWx3 ``image`` (never modified in place)."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise WriterError(f"sample {sample_id}: corruptions need an RGB uint8 HxWx3 image, got "
                              f"{image.dtype} {image.shape}")
        for step, spec in enumerate(self.specs):
            info = spec.info
            if info.kind != "pixel":
                continue
            out = info.fn(image, spec.params, self.rng(step, sample_id))
            if out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] != 3:   # a corruption's bug, said plainly
                raise RuntimeError(f"corruption {spec} returned {out.dtype} {out.shape}, not uint8 HxWx3")
            image = out
        return image

    __call__ = apply   # the writer's ``corrupt(image, sample_id)`` hook

    # ------------------------------------------------------------------------------------------ labels
    def noisy_labels(self, labels: np.ndarray, ids: np.ndarray, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
        """Label corruptions, in order, of ``labels`` (aligned with sample ``ids``).

        Each sample's draw depends only on (step, seed, id), so any subset or order of the samples gets the
        same noisy labels as the full split.

        Returns:
            ``(new_labels, changed)``: int64 labels and a bool mask of the samples whose label differs from
            the input (``label_noise_record`` turns them into the manifest's per-sample list).
        """
        labels = np.asarray(labels, dtype=np.int64)
        ids = np.asarray(ids, dtype=np.int64)
        if labels.shape != ids.shape or labels.ndim != 1:
            raise WriterError(f"labels {labels.shape} and ids {ids.shape} must be aligned 1-D arrays")
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise WriterError(f"labels must lie in [0, {num_classes}) for label noise; found "
                              f"[{labels.min()}, {labels.max()}]")
        new = labels.copy()
        for step, spec in enumerate(self.specs):
            info = spec.info
            if info.kind != "label":
                continue
            key = stable_hash64(f"{self._keys[step]}/{self.seed}")
            new = info.fn(new, int(num_classes), spec.params, lambda stream, _k=key: uniforms(_k, ids, stream))
        return new, new != labels
