"""Places365-Standard from its official file lists (layouts: ``docs/datasets.md``).

``categories_places365.txt`` (``/a/airfield 0``) names the classes; ``places365_train_standard.txt``
(``/a/airfield/00000001.jpg 0``) and ``places365_val.txt`` (``Places365_val_00000001.jpg 165``) list
the images of each split with their label. Images live under the official archive folders
(``data_256``/``data_large``, ``val_256``/``val_large``) or torchvision's renamed ones
(``data_256_standard``/``data_large_standard``). Paths always come from the lists, never synthesised.

The optional scene hierarchy (3 and 16 classes above the 365, Cole et al. §4.4) is read from a CSV the
user provides, in either of two forms (see ``read_hierarchy``), and stored like iNat21's taxonomy.
"""
from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import WriterError
from ..records import FileImages, SplitIndex
from ..registry import register_reader
from ._common import (Problems, first_dir, first_occurrences, names_by_id, option_path, present, read_lines,
                      require_nonempty, require_root)

RESOLUTIONS = ("auto", "large", "256")
LIST_FILES = {"train": "places365_train_standard.txt", "val": "places365_val.txt"}
LEVELS = ("places3", "places16")


@dataclass
class Places365Options:
    """Reader options (``KEY=VALUE`` on the command line).

    Attributes:
        resolution: which image folders to read: ``large`` (min side 512; ``data_large``/``val_large``),
            ``256`` (256x256 squashed; ``data_256``/``val_256``), or ``auto`` (large if present, as
            torchvision's default, else 256).
        filelists: folder holding ``categories_places365.txt`` and the split lists (default: --root).
        hierarchy: optional scene-hierarchy CSV (3/16 levels); absolute or relative to --root.
    """

    resolution: str = "auto"
    filelists: str = ""
    hierarchy: str = ""

    def validate(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise WriterError(f"places365 option resolution={self.resolution!r} is not one of {', '.join(RESOLUTIONS)}")


def category_name(path: str) -> str:
    """``/a/apartment_building/outdoor`` -> ``apartment_building/outdoor`` (drop the initial-letter folder)."""
    path = path.strip().strip("'\"").strip()
    return re.sub(r"^/?[a-z]/", "", path) if re.match(r"^/?[a-z]/", path) else path.lstrip("/")


def read_categories(path: Path) -> List[str]:
    if not path.is_file():
        raise WriterError(f"{path} not found; extract filelist_places365-standard.tar into --root "
                          "(or pass filelists=DIR)")
    names: Dict[int, str] = {}
    for k, line in enumerate(read_lines(path), 1):
        cat, _, idx = line.rpartition(" ")
        if not cat or not idx.isdigit():
            raise WriterError(f"{path}: line {k} is not '<category> <id>': {line[:60]!r}")
        if int(idx) in names:
            raise WriterError(f"{path}: category id {idx} appears twice (line {k}); re-extract the file list")
        names[int(idx)] = category_name(cat)
    return names_by_id(names, path)


def read_hierarchy(path: Path, class_names: Sequence[str]) -> Tuple[Dict[str, np.ndarray], Dict[str, List[str]]]:
    """Scene hierarchy CSV -> (level id of every class id, level name tables) for ``places3`` and ``places16``.

    Two forms are accepted (comma-separated, one row per category, categories as in
    ``categories_places365.txt`` with or without the ``/a/`` prefix):

    * names: a header row ``category,level1,level2`` then e.g. ``/a/airfield,outdoor man-made,transportation``;
      level ids are indices into the sorted names of each level.
    * flags (the official "Scene hierarchy" sheet exported as CSV): one or more explanation rows, then a
      header row whose columns 2-4 name the 3 level-1 classes and columns 5-20 the 16 level-2 classes, then
      0/1 flags per category. A category flagged in several columns takes the first (documented, since the
      paper does not say how it resolved them); level ids follow the column order.
    """
    if not path.is_file():
        raise WriterError(f"hierarchy={path} does not exist; give the path of the scene-hierarchy CSV")
    with open(path, newline="", encoding="utf-8-sig") as fp:
        rows = [[c.strip() for c in r] for r in csv.reader(fp) if any(c.strip() for c in r)]
    position = {n: i for i, n in enumerate(class_names) if n}
    header_at = next((i for i, r in enumerate(rows) if len(r) >= 3 and r[1].lower() == "level1"
                      and r[2].lower() == "level2"), None)
    members: Dict[int, Tuple[str, str]] = {}
    if header_at is not None:
        for k, r in enumerate(rows[header_at + 1:], header_at + 2):
            name = category_name(r[0])
            if name not in position or len(r) < 3 or not r[1] or not r[2]:
                raise WriterError(f"{path}: row {k} is not '<known category>,<level1>,<level2>': {','.join(r)[:60]!r}")
            members[position[name]] = (r[1], r[2])
        tables = {lvl: sorted({m[j] for m in members.values()}) for j, lvl in enumerate(LEVELS)}
    else:
        header_at = next((i for i, r in enumerate(rows) if len(r) >= 20 and category_name(r[0]) not in position
                          and i + 1 < len(rows) and category_name(rows[i + 1][0]) in position), None)
        if header_at is None:
            raise WriterError(f"{path}: neither a 'category,level1,level2' header nor the official flag sheet "
                              "(a header row of 3 + 16 level names, then 0/1 flags per category); see docs/datasets.md")
        header = rows[header_at]
        tables = {"places3": header[1:4], "places16": header[4:20]}
        for k, r in enumerate(rows[header_at + 1:], header_at + 2):
            name = category_name(r[0])
            try:
                flags = [float(c or 0) for c in r[1:20]]
            except ValueError:
                raise WriterError(f"{path}: row {k} has a non-numeric flag: {','.join(r)[:60]!r}") from None
            if name not in position or len(flags) < 19 or not any(flags[:3]) or not any(flags[3:19]):
                raise WriterError(f"{path}: row {k} is not a known category with a level-1 and a level-2 flag: "
                                  f"{','.join(r)[:60]!r}")
            first = lambda fs: next(i for i, f in enumerate(fs) if f)  # noqa: E731
            members[position[name]] = (tables["places3"][first(flags[:3])], tables["places16"][first(flags[3:19])])
    missing = [n for n, i in position.items() if i not in members]
    if missing:
        raise WriterError(f"{path}: no row for {len(missing)} categories (e.g. {missing[0]!r}); "
                          "the hierarchy must cover every category")
    levels: Dict[str, np.ndarray] = {}
    for j, lvl in enumerate(LEVELS):
        index = {n: i for i, n in enumerate(tables[lvl])}
        table = np.full(len(class_names), -1, dtype=np.int64)
        for cid, m in members.items():
            table[cid] = index[m[j]]
        levels[lvl] = table
    return levels, {lvl: list(tables[lvl]) for lvl in LEVELS}


def _image_root(root: Path, split: str, resolution: str) -> Tuple[Path, str]:
    order = ("large", "256") if resolution == "auto" else (resolution,)
    names = []
    for res in order:
        cands = [f"data_{res}", f"data_{res}_standard"] if split == "train" else [f"val_{res}"]
        names += cands
        found = first_dir(root / c for c in cands)
        if found is not None:
            return found, res
    raise WriterError(f"--root {root}: no image folder for {split} (looked for {', '.join(n + '/' for n in names)}); "
                      "extract the image archive into --root"
                      + (" or pass resolution=auto" if resolution != "auto" else ""))


@register_reader("places365", splits=("train", "val"), options=Places365Options,
                 summary="Places365-Standard: 1,803,460 train / 36,500 val, 365 scene classes")
def read_places365(root: Optional[Path], split: str, opts: Places365Options) -> SplitIndex:
    """Index one split of Places365-Standard from the official file lists."""
    root = require_root(root, "places365", "categories_places365.txt, the file lists and data_256/ or data_large/")
    lists = option_path(opts.filelists, root) or root
    class_names = read_categories(lists / "categories_places365.txt")
    list_path = lists / LIST_FILES[split]
    if not list_path.is_file():
        raise WriterError(f"{list_path} not found; extract filelist_places365-standard.tar into --root "
                          "(or pass filelists=DIR)")
    images, resolution = _image_root(root, split, opts.resolution)
    problems = Problems()
    rel: List[str] = []
    labels: List[int] = []
    ids: List[int] = []
    for k, line in enumerate(read_lines(list_path)):
        name, _, idx = line.rpartition(" ")
        if not name or not idx.lstrip("-").isdigit():
            raise WriterError(f"{list_path}: line {k + 1} is not '<image> <label>': {line[:60]!r}")
        label = int(idx)
        if not 0 <= label < len(class_names) or not class_names[label]:
            problems.add(f"{list_path} line {k + 1}", f"unknown class {label} (not in categories_places365.txt)")
            continue
        rel.append(name.lstrip("/"))
        labels.append(label)
        m = re.search(r"_(\d+)\.\w+$", name) if split == "val" else None
        ids.append(int(m.group(1)) if m else k)
    describe = [str(images / r) for r in rel]
    keep = first_occurrences(rel, describe, problems, "image")
    kept = np.flatnonzero(keep)
    keep[kept] = first_occurrences([ids[i] for i in kept], [describe[i] for i in kept], problems, "image id")
    exists = present(images, rel)
    for i in np.flatnonzero(keep & ~exists):
        problems.add(images / rel[i], f"listed in {list_path.name} but not found")
    keep &= exists
    require_nonempty(int(keep.sum()), "places365", split, images, problems)
    label_arr = np.asarray(labels, dtype=np.int64)[keep]
    levels: Dict[str, np.ndarray] = {}
    level_names: Dict[str, List[str]] = {}
    hierarchy = option_path(opts.hierarchy, root)
    if hierarchy is not None:
        tables, level_names = read_hierarchy(hierarchy, class_names)
        levels = {k: v[label_arr] for k, v in tables.items()}
    id_kind = "val image number (Places365_val_00000001.jpg -> 1)" if split == "val" \
        else f"line number (0-based) in {LIST_FILES[split]}"
    return SplitIndex(
        dataset="places365", split=split, ids=np.asarray(ids, dtype=np.int64)[keep], labels=label_arr,
        class_names=class_names, source=FileImages(images, [r for r, k in zip(rel, keep) if k]), id_kind=id_kind,
        levels=levels, level_names=level_names,
        options={**asdict(opts), "images": str(images), "resolution_used": resolution}, skipped=problems.items,
    )
