"""Helpers shared by the dataset readers: root checks, fast file-existence checks, annotation problems.

Readers only *index* a split (paths, ids, labels); pixels are read later by the writer's workers. Every
problem with one entry (a file listed in an annotation but missing, an unknown class, a duplicate id)
is collected as ``{"file", "reason"}`` instead of raised, so that ``--on-error skip`` can leave the entry
out and list it in the manifest, and ``--on-error fail`` (the default) can stop before writing anything
with a message naming the first one. Problems with the dataset as a whole (wrong ``--root``, unreadable
annotation file, empty split) raise ``WriterError`` at once.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set

import numpy as np

from ..errors import WriterError

# torchvision's IMG_EXTENSIONS: what ImageFolder accepts (by name only; the bytes are sniffed when decoded)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def require_root(root: Optional[os.PathLike], dataset: str, expected: str) -> Path:
    """``--root`` as an existing directory, or a one-line error saying what it should contain."""
    if root is None or str(root) == "":
        raise WriterError(f"{dataset}: --root is required; point it at the folder that holds {expected}")
    path = Path(root).expanduser()
    if not path.exists():
        raise WriterError(f"--root {path} does not exist; point it at the folder that holds {expected}")
    if not path.is_dir():
        raise WriterError(f"--root {path} is a file; point it at the folder that holds {expected}")
    return path


def first_dir(candidates: Iterable[Path]) -> Optional[Path]:
    return next((c for c in candidates if c.is_dir()), None)


def first_file(candidates: Iterable[Path]) -> Optional[Path]:
    return next((c for c in candidates if c.is_file()), None)


def option_path(value: str, root: Path) -> Optional[Path]:
    """A path given as a reader option: absolute, or relative to ``--root``; None when unset."""
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def read_lines(path: Path) -> List[str]:
    """Non-empty, stripped lines of a text annotation file (tolerates a UTF-8 BOM and CRLF)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WriterError(f"{path}: not a UTF-8 text file ({exc.reason}); re-extract it from the official "
                          "archive") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(directory: Path) -> List[str]:
    """Sorted names of the image files directly inside ``directory`` (one ``scandir``, no ``stat`` per file)."""
    with os.scandir(directory) as it:
        return sorted(e.name for e in it if is_image_name(e.name) and e.is_file())


def list_subdirs(directory: Path) -> List[str]:
    """Sorted names of the non-hidden sub-directories of ``directory``."""
    with os.scandir(directory) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())


def present(root: Path, relpaths: Sequence[str]) -> np.ndarray:
    """Which of ``relpaths`` (relative to ``root``) exist, listing each parent folder once.

    Annotation-driven datasets list millions of files in a few thousand folders; one ``scandir`` per
    folder is orders of magnitude faster than one ``stat`` per file on network file systems.
    """
    by_dir: Dict[str, List[int]] = defaultdict(list)
    for i, rel in enumerate(relpaths):
        by_dir[os.path.dirname(rel)].append(i)
    mask = np.zeros(len(relpaths), dtype=bool)
    for directory, members in by_dir.items():
        try:
            with os.scandir(root / directory) as it:
                names: Set[str] = {e.name for e in it}
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            # an unreadable folder: keep its entries, so each image fails to open with "permission denied"
            # naming the file (listed with --on-error skip), instead of being reported as missing
            mask[members] = True
            continue
        for i in members:
            mask[i] = os.path.basename(relpaths[i]) in names
    return mask


class Problems:
    """Per-entry problems found while indexing; become ``SplitIndex.skipped``."""

    def __init__(self) -> None:
        self.items: List[Dict[str, str]] = []

    def add(self, file: os.PathLike | str, reason: str) -> None:
        self.items.append({"file": str(file), "reason": reason})

    def __len__(self) -> int:
        return len(self.items)


def first_occurrences(keys: Sequence, describe: Sequence[str], problems: Problems, what: str) -> np.ndarray:
    """Mask keeping the first entry of every key; later duplicates become problems naming both entries."""
    seen: Dict = {}
    keep = np.ones(len(keys), dtype=bool)
    for i, key in enumerate(keys):
        if key in seen:
            keep[i] = False
            problems.add(describe[i], f"duplicate {what} {key} (also {describe[seen[key]]}); fix the annotation")
        else:
            seen[key] = i
    return keep


def names_by_id(names: Dict[int, str], source: Path) -> List[str]:
    """Class names indexed by official id; ids must be >= 0 (gaps get empty names, labels keep the official id)."""
    if not names:
        raise WriterError(f"{source}: no classes found; re-extract it from the official archive")
    if min(names) < 0:
        raise WriterError(f"{source}: negative class id {min(names)}; re-extract it from the official archive")
    table = [""] * (max(names) + 1)
    for k, v in names.items():
        table[k] = v
    return table


def require_nonempty(n: int, dataset: str, split: str, where: Path, problems: Problems) -> None:
    """An empty split is an error for the dataset as a whole; say why when every entry had a problem."""
    if n:
        return
    why = f"; first problem: {problems.items[0]['file']}: {problems.items[0]['reason']}" if len(problems) else ""
    raise WriterError(f"{dataset}/{split}: the split is empty (nothing usable in {where}){why}; "
                      "check --root and --split")
