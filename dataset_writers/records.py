"""What a reader hands the writer: the index of one split (ids, labels, hierarchy) and a pixel source."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from .images import open_rgb


class ImageSource(Protocol):
    """Pixels of a split, by position. Must be picklable (writer workers are forked or spawned)."""

    def load(self, pos: int, draft_max_side: Optional[int] = None) -> np.ndarray:
        """RGB uint8 HxWx3 image of sample ``pos``; raises ``ImageError`` naming the file."""

    def describe(self, pos: int) -> str:
        """Where sample ``pos`` comes from (a path), for error messages and the skipped list."""


@dataclass
class FileImages:
    """Images stored as files under ``root`` (paths relative to it)."""

    root: Path
    paths: Sequence[str]
    exif_transpose: bool = True

    def load(self, pos: int, draft_max_side: Optional[int] = None) -> np.ndarray:
        return open_rgb(self.root / self.paths[pos], exif_transpose=self.exif_transpose,
                        draft_max_side=draft_max_side)

    def describe(self, pos: int) -> str:
        return str(self.root / self.paths[pos])


@dataclass
class ArrayImages:
    """Images already in memory as one (N, H, W, 3) uint8 array (embedded datasets)."""

    images: np.ndarray
    name: str = "array"

    def load(self, pos: int, draft_max_side: Optional[int] = None) -> np.ndarray:
        return self.images[pos]

    def describe(self, pos: int) -> str:
        return f"{self.name}[{pos}]"


@dataclass(frozen=True)
class ExtraField:
    """A non-label per-sample array stored beside the image (e.g. GLC20 near-IR, altitude)."""

    shape: Tuple[int, ...]
    dtype: str
    description: str = ""


@dataclass
class SplitIndex:
    """Everything a reader knows about one split except the pixels.

    Attributes:
        ids: original id of every sample (``id_kind`` says what it is), stored in the beton's ``index``
            field so any sample can be traced back to its file.
        labels: class index of every sample, in ``[0, len(class_names))``.
        levels: extra integer label levels, ordered coarse to fine (e.g. iNat21 kingdom ... genus);
            ``level_names[level][k]`` names class ``k`` of that level.
        extras: optional non-label arrays, loaded by ``load_extra(pos)``.
        skipped: problems found while indexing (with ``on_error='skip'``), each ``{"file", "reason"}``.
    """

    dataset: str
    split: str
    ids: np.ndarray
    labels: np.ndarray
    class_names: List[str]
    source: Any
    id_kind: str = "position in the reader's sorted listing"
    levels: Dict[str, np.ndarray] = field(default_factory=dict)
    level_names: Dict[str, List[str]] = field(default_factory=dict)
    extras: Dict[str, ExtraField] = field(default_factory=dict)
    options: Dict[str, Any] = field(default_factory=dict)
    skipped: List[Dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int64)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.levels = {k: np.asarray(v, dtype=np.int64) for k, v in self.levels.items()}
        n = len(self.ids)
        if len(self.labels) != n or any(len(v) != n for v in self.levels.values()):
            raise ValueError("ids, labels and levels must have one entry per sample")

    def __len__(self) -> int:
        return len(self.ids)

    def load_extra(self, pos: int) -> Dict[str, np.ndarray]:
        """Extra arrays of sample ``pos``; the source implements ``load_extra`` when ``extras`` is set."""
        return self.source.load_extra(pos) if self.extras else {}
