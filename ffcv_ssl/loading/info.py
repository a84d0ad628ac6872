"""What a beton holds, for the engine and for results: sample and class counts, provenance from its manifest."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:
    from dataset_writers.manifest import Manifest


@dataclass
class BetonInfo:
    path: str
    num_samples: int
    num_classes: int
    dataset: str = ""
    split: str = ""
    size: Optional[int] = None              # subset size when the beton is a nested subset
    corruption: str = "none"                # canonical corruption string (results.json)
    pool: List[str] = field(default_factory=list)
    sha256: str = ""
    level_names: Dict[str, List[str]] = field(default_factory=dict)
    manifest: Optional[Manifest] = None


def beton_info(path: str | Path) -> BetonInfo:
    """Read the beton's header (and its manifest when there is one) without loading any image."""
    from dataset_writers.beton_check import check_beton_path, open_beton
    from dataset_writers.manifest import manifest_path, read_manifest

    path = check_beton_path(path)       # missing, a directory: one line
    manifest = read_manifest(path) if manifest_path(path).is_file() else None
    # header and tables validated from the metadata (a damaged beton is one line, never a crash later)
    reader = open_beton(path, manifest)
    names = list(reader.handlers)
    if "label" not in names:
        raise UserError(f"{path}: has no 'label' field (fields: {', '.join(names)})")
    labels = reader.metadata[f"f{names.index('label')}"]
    n = int(reader.num_samples)
    if manifest is None:
        return BetonInfo(str(path), n, int(labels.max()) + 1 if n else 0, dataset=path.stem)
    corruption = "none"
    if manifest.corruption:
        from dataset_writers.corruptions import CorruptionChain

        corruption = CorruptionChain.from_manifest(manifest.corruption).describe()
    pool = [s.dataset for s in manifest.sources] if len(manifest.sources) > 1 else []
    return BetonInfo(str(path), n, manifest.num_classes or (int(np.max(labels)) + 1),
                     dataset="pool" if pool else manifest.dataset, split=manifest.split,
                     size=manifest.subset.n if manifest.subset is not None else None, corruption=corruption,
                     pool=pool, sha256=manifest.sha256,
                     level_names={k: v.names for k, v in manifest.label_levels.items()}, manifest=manifest)


def beton_labels(path: str | Path, field_name: str = "label") -> np.ndarray:
    """Integer labels (or another integer field) of every sample, from the beton's metadata table (validated)."""
    from dataset_writers.beton_check import open_beton

    reader = open_beton(path)
    names = list(reader.handlers)
    if field_name not in names:
        raise UserError(f"{path}: has no field '{field_name}' (fields: {', '.join(names)})")
    return np.asarray(reader.metadata[f"f{names.index(field_name)}"], dtype=np.int64)
