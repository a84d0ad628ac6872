"""iNaturalist 2021 from its official COCO-like JSON files (layout: ``docs/datasets.md``).

``{split}.json`` lists ``images`` (``file_name`` relative to the dataset root, including the split
folder), ``annotations`` (``image_id`` -> ``category_id``) and ``categories`` (with the taxonomy).
The label is the official category id (0..9,999), so it matches published models; the taxonomy is
stored as extra integer fields, coarse to fine (kingdom 3 ... genus 4,884, species 10,000 in the full
set), with their name tables in the manifest, so the granularity evaluation (Cole et al. §4.4) needs
nothing else. A taxon is identified by its full path (``Animalia/Chordata/Aves``), because the same
genus name can occur in two kingdoms; level ids are indices into the sorted paths of *all* categories,
hence identical across train, train_mini and val.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ffcv_ssl.files import read_json

from ..errors import WriterError
from ..records import FileImages, SplitIndex
from ..registry import register_reader
from ._common import Problems, names_by_id, option_path, present, require_nonempty, require_root

TAXONOMY = ("kingdom", "phylum", "class", "order", "family", "genus")


@dataclass
class INat21Options:
    """Reader options (``KEY=VALUE`` on the command line).

    Attributes:
        annotations: folder holding ``train.json`` / ``train_mini.json`` / ``val.json`` (default: --root).
        species_level: also store ``species`` (== the label) as a level field, so every level of the
            hierarchy is a field of the same kind.
    """

    annotations: str = ""
    species_level: bool = True

    def validate(self) -> None:
        pass


def _load_json(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise WriterError(f"{path} not found; extract {path.name}.tar.gz into --root (or pass annotations=DIR)")
    data = read_json(path, WriterError, "re-extract it")
    missing = [k for k in ("images", "annotations", "categories") if k not in (data if isinstance(data, dict) else {})]
    if missing:
        raise WriterError(f"{path}: no {', '.join(repr(k) for k in missing)} key; is it the iNat21 {path.stem} "
                          "annotation file (public_test.json has no labels)?")
    return data


def _taxonomy(categories: List[Dict[str, Any]], path: Path, with_species: bool):
    """Class names by id, and per level: the level id of each category id plus the level's name table."""
    names: Dict[int, str] = {}
    for c in categories:
        try:
            names[int(c["id"])] = str(c["name"])
        except (KeyError, TypeError, ValueError):
            raise WriterError(f"{path}: a category without an integer 'id' and a 'name': {str(c)[:80]}") from None
    if len(names) != len(categories):
        raise WriterError(f"{path}: a category id appears twice; re-extract the annotation file")
    class_names = names_by_id(names, path)
    levels: Dict[str, np.ndarray] = {}
    level_names: Dict[str, List[str]] = {}
    keys: Dict[int, List[str]] = {int(c["id"]): [] for c in categories}
    for depth, level in enumerate(TAXONOMY):
        for c in categories:
            if not isinstance(c.get(level), str):
                raise WriterError(f"{path}: category {c['id']} has no '{level}'; this reader needs the iNat21 "
                                  "taxonomy (kingdom ... genus) on every category")
            keys[int(c["id"])].append(c[level])
        paths = sorted({"/".join(k[: depth + 1]) for k in keys.values()})
        position = {p: i for i, p in enumerate(paths)}
        table = np.full(len(class_names), -1, dtype=np.int64)
        for cid, k in keys.items():
            table[cid] = position["/".join(k[: depth + 1])]
        levels[level] = table
        level_names[level] = [p.rsplit("/", 1)[-1] for p in paths]
    if with_species:
        levels["species"] = np.arange(len(class_names), dtype=np.int64)
        level_names["species"] = list(class_names)
    return class_names, levels, level_names


@register_reader("inat21", splits=("train", "train_mini", "val"), options=INat21Options,
                 summary="iNaturalist 2021: 2,686,843 train / 500,000 train_mini / 100,000 val, 10,000 species")
def read_inat21(root: Optional[Path], split: str, opts: INat21Options) -> SplitIndex:
    """Index one split of iNat21 from ``{split}.json``; images are ``root / file_name``."""
    root = require_root(root, "inat21", "train.json, val.json and the train/ and val/ image folders")
    json_path = (option_path(opts.annotations, root) or root) / f"{split}.json"
    data = _load_json(json_path)
    class_names, levels, level_names = _taxonomy(data["categories"], json_path, opts.species_level)
    known = set(int(c["id"]) for c in data["categories"])
    problems = Problems()

    files: Dict[int, str] = {}
    for im in data["images"]:
        try:
            image_id, file_name = int(im["id"]), str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            raise WriterError(f"{json_path}: an image without an integer 'id' and a 'file_name': "
                              f"{str(im)[:80]}") from None
        if image_id in files:
            problems.add(f"{json_path} image {image_id}", f"duplicate image id {image_id} (also {files[image_id]})")
        else:
            files[image_id] = file_name
    labels: Dict[int, int] = {}
    annotated = set()
    for ann in data["annotations"]:
        try:
            image_id, category = int(ann["image_id"]), int(ann["category_id"])
        except (KeyError, TypeError, ValueError):
            raise WriterError(f"{json_path}: an annotation without integer 'image_id' and 'category_id': "
                              f"{str(ann)[:80]}") from None
        where = f"{json_path} annotation {ann.get('id', '?')}"
        duplicate = image_id in annotated
        annotated.add(image_id)
        if image_id not in files:
            problems.add(where, f"refers to image {image_id}, which is not in 'images'")
        elif duplicate:
            labels.pop(image_id, None)  # two labels for one image: keep neither
            problems.add(where, f"duplicate annotation for image {image_id}; fix the annotation")
        elif category not in known:
            problems.add(where, f"unknown class: category_id {category} is not in 'categories'")
        else:
            labels[image_id] = category
    for image_id in sorted(set(files) - annotated):
        problems.add(root / files[image_id], f"image {image_id} has no annotation (no label)")

    ids = np.asarray(sorted(labels), dtype=np.int64)
    rel = [files[i].lstrip("/") for i in ids.tolist()]
    exists = present(root, rel)
    for i in np.flatnonzero(~exists):
        problems.add(root / rel[i], f"listed in {json_path.name} but not found")
    ids = ids[exists]
    rel = [r for r, e in zip(rel, exists) if e]
    require_nonempty(len(ids), "inat21", split, root, problems)
    label = np.asarray([labels[i] for i in ids.tolist()], dtype=np.int64)
    return SplitIndex(
        dataset="inat21", split=split, ids=ids, labels=label, class_names=class_names,
        source=FileImages(root, rel), id_kind=f"image id in {split}.json",
        levels={k: v[label] for k, v in levels.items()}, level_names=level_names,
        options={**asdict(opts), "annotation_file": str(json_path)}, skipped=problems.items,
    )
