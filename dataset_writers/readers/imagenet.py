"""ImageNet-1k (ILSVRC2012) from any of its official on-disk layouts (listed in ``docs/datasets.md``).

Train is always ``train/<wnid>/*.JPEG``. Val comes in three forms: class folders (``valprep.sh``,
torchvision), a flat folder with Kaggle's ``LOC_val_solution.csv``, or a flat folder with the devkit's
``ILSVRC2012_validation_ground_truth.txt`` + ``meta.mat``. Labels are always the index in the sorted list
of WNIDs (what torchvision, ffcv-imagenet and pretrained models use), never the devkit's ILSVRC2012_ID,
so the same image gets the same label whatever the layout; val samples are ordered by their val number,
so the three layouts give identical betons.
"""
from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import WriterError
from ..records import FileImages, SplitIndex
from ..registry import register_reader
from ._common import (Problems, first_dir, first_file, first_occurrences, list_images, list_subdirs, option_path,
                      read_lines, require_nonempty, require_root)

VAL_LAYOUTS = ("auto", "folders", "kaggle", "devkit")
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
_TRAIN_NAME = re.compile(r"^n(\d{8})_(\d{1,10})$")
_VAL_NAME = re.compile(r"(\d+)$")


@dataclass
class ImageNetOptions:
    """Reader options (``KEY=VALUE`` on the command line).

    Attributes:
        val_layout: ``auto`` detects the val layout (class folders, then Kaggle CSV, then devkit); force
            one when a tree holds several.
        devkit: folder holding ``meta.mat`` and the ground-truth txt (default: searched under --root,
            e.g. ``ILSVRC2012_devkit_t12/data``).
        synset_mapping: ``LOC_synset_mapping.txt`` (default: searched under --root); gives class names.
    """

    val_layout: str = "auto"
    devkit: str = ""
    synset_mapping: str = ""

    def validate(self) -> None:
        if self.val_layout not in VAL_LAYOUTS:
            raise WriterError(f"imagenet option val_layout={self.val_layout!r} is not one of {', '.join(VAL_LAYOUTS)}")


@dataclass
class _Classes:
    wnids: List[str]
    names: List[str]
    source: str

    def index(self) -> Dict[str, int]:
        return {w: i for i, w in enumerate(self.wnids)}


def _images_dir(root: Path, split: str) -> Path:
    found = first_dir([root / split, root / "ILSVRC" / "Data" / "CLS-LOC" / split])
    if found is None:
        raise WriterError(f"--root {root}: no {split}/ folder (looked for {split}/ and ILSVRC/Data/CLS-LOC/{split}/); "
                          "point --root at the folder that holds train/ and val/, or at the Kaggle tree")
    return found


def _find_devkit(root: Path, opts: ImageNetOptions) -> Optional[Path]:
    given = option_path(opts.devkit, root)
    if given is not None:
        if not (given / "meta.mat").is_file() or not (given / GROUND_TRUTH).is_file():
            raise WriterError(f"devkit={given}: needs meta.mat and {GROUND_TRUTH} inside it "
                              "(the data/ folder of ILSVRC2012_devkit_t12.tar.gz)")
        return given
    for cand in (root / "ILSVRC2012_devkit_t12" / "data", root / "ILSVRC2012_devkit_t12", root / "devkit" / "data",
                 root / "devkit", root / "data", root):
        if (cand / "meta.mat").is_file() and (cand / GROUND_TRUTH).is_file():
            return cand
    return None


def _read_synset_mapping(path: Path) -> _Classes:
    """``n01440764 tench, Tinca tinca`` per line (names hold spaces and commas: split once)."""
    wnids, names = [], []
    for k, line in enumerate(read_lines(path), 1):
        wnid, _, name = line.partition(" ")
        if not re.fullmatch(r"n\d{8}", wnid):
            raise WriterError(f"{path}: line {k} does not start with a WNID (nXXXXXXXX): {line[:40]!r}")
        wnids.append(wnid)
        names.append(name.strip() or wnid)
    if len(set(wnids)) != len(wnids):
        raise WriterError(f"{path}: a WNID appears twice; re-extract it from the official archive")
    order = np.argsort(wnids, kind="stable")
    return _Classes([wnids[i] for i in order], [names[i] for i in order], path.name)


def _read_meta(devkit: Path) -> Tuple[Dict[int, str], Dict[str, str]]:
    """meta.mat: ILSVRC2012_ID -> WNID and WNID -> words, for leaf synsets only (``num_children == 0``)."""
    import scipy.io

    path = devkit / "meta.mat"
    try:
        synsets = scipy.io.loadmat(str(path), squeeze_me=True)["synsets"]
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same user problem
        raise WriterError(f"{path}: cannot read ({type(exc).__name__}: {exc}); re-extract the devkit") from None
    id_to_wnid: Dict[int, str] = {}
    words: Dict[str, str] = {}
    for s in np.atleast_1d(synsets):
        try:
            if int(np.asarray(s["num_children"]).item()) != 0:
                continue  # one of the 860 non-leaf synsets: never a label
            wnid = str(s["WNID"])
            id_to_wnid[int(np.asarray(s["ILSVRC2012_ID"]).item())] = wnid
            words[wnid] = str(s["words"])
        except (ValueError, KeyError, IndexError) as exc:
            raise WriterError(f"{path}: unexpected synset record ({exc}); re-extract the devkit") from None
    if not id_to_wnid:
        raise WriterError(f"{path}: no leaf synsets (num_children == 0); re-extract the devkit")
    return id_to_wnid, words


def _classes(root: Path, opts: ImageNetOptions, devkit: Optional[Path], val_dir: Optional[Path]) -> _Classes:
    """The sorted WNID list: synset mapping > devkit meta.mat > train/ folders > val/ folders."""
    mapping = option_path(opts.synset_mapping, root)
    if mapping is not None and not mapping.is_file():
        raise WriterError(f"synset_mapping={mapping} does not exist; give the path of LOC_synset_mapping.txt")
    mapping = mapping or first_file([root / "LOC_synset_mapping.txt", root / "synset_words.txt"])
    if mapping is not None:
        return _read_synset_mapping(mapping)
    if devkit is not None:
        _, words = _read_meta(devkit)
        wnids = sorted(words)
        return _Classes(wnids, [words[w] for w in wnids], "meta.mat")
    for folder in (first_dir([root / "train", root / "ILSVRC" / "Data" / "CLS-LOC" / "train"]), val_dir):
        if folder is not None:
            wnids = list_subdirs(folder)
            if wnids:
                return _Classes(wnids, list(wnids), f"{folder.name}/ folder names")
    raise WriterError(f"--root {root}: cannot find the class list (LOC_synset_mapping.txt, the devkit's meta.mat, "
                      "or train/<wnid>/ folders); pass synset_mapping=PATH or devkit=PATH")


def _folder_samples(base: Path, classes: _Classes, problems: Problems) -> Tuple[List[str], List[int]]:
    """``<base>/<wnid>/<file>`` in ImageFolder order: sorted class folders, sorted files."""
    index = classes.index()
    paths: List[str] = []
    labels: List[int] = []
    for wnid in list_subdirs(base):
        try:
            files = list_images(base / wnid)
        except PermissionError:
            problems.add(base / wnid, "permission denied: cannot list this class folder, its images are left out; "
                                      "make it readable (chmod a+rx)")
            continue
        if wnid not in index:
            problems.add(base / wnid, f"class folder not in {classes.source} ({len(files)} images left out)")
            continue
        paths += [f"{wnid}/{f}" for f in files]
        labels += [index[wnid]] * len(files)
    return paths, labels


def _detect_val_layout(root: Path, base: Path, opts: ImageNetOptions, devkit: Optional[Path]) -> str:
    if opts.val_layout != "auto":
        return opts.val_layout
    if list_subdirs(base):
        return "folders"
    if (root / "LOC_val_solution.csv").is_file():
        return "kaggle"
    if devkit is not None:
        return "devkit"
    raise WriterError(f"{base} is a flat folder but neither LOC_val_solution.csv nor the devkit ({GROUND_TRUTH} + "
                      "meta.mat) was found under --root; extract ILSVRC2012_devkit_t12.tar.gz there or pass "
                      "devkit=PATH")


def _flat_val(base: Path, problems: Problems) -> Dict[int, str]:
    """Val number -> file name of the flat val folder (``ILSVRC2012_val_00000001.JPEG`` -> 1)."""
    by_number: Dict[int, str] = {}
    for name in list_images(base):
        m = _VAL_NAME.search(Path(name).stem)
        if m is None:
            problems.add(base / name, "not a val file name (ILSVRC2012_val_NNNNNNNN.JPEG), so it has no label")
        elif int(m.group(1)) in by_number:
            number = int(m.group(1))
            problems.add(base / name, f"duplicate image id {number} (also {base / by_number[number]})")
        else:
            by_number[int(m.group(1))] = name
    return by_number


def _kaggle_val(root: Path, base: Path, classes: _Classes, problems: Problems) -> Tuple[List[str], List[int]]:
    """Flat val + ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the first token is the WNID)."""
    csv_path = root / "LOC_val_solution.csv"
    if not csv_path.is_file():
        raise WriterError(f"{csv_path} not found; it ships in the Kaggle archive next to LOC_synset_mapping.txt")
    stems = {Path(n).stem: n for n in list_images(base)}
    index = classes.index()
    rows: Dict[str, str] = {}
    listed = set()
    with open(csv_path, newline="", encoding="utf-8-sig") as fp:
        reader = csv.reader(fp)
        header = next(reader, None)
        if not header or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise WriterError(f"{csv_path}: header must be 'ImageId,PredictionString'; re-extract it from the "
                              "Kaggle archive")
        for k, row in enumerate(reader, 2):
            if not row:
                continue
            image_id, tokens = row[0].strip(), (row[1].split() if len(row) > 1 else [])
            where = f"{csv_path} line {k} ({image_id})"
            duplicate = image_id in listed
            listed.add(image_id)
            if duplicate:
                problems.add(where, "duplicate ImageId; fix the annotation")
            elif not tokens:
                problems.add(where, "no PredictionString (no label)")
            elif tokens[0] not in index:
                problems.add(where, f"unknown class {tokens[0]} (not in {classes.source})")
            elif image_id not in stems:
                problems.add(base / f"{image_id}.JPEG", "listed in LOC_val_solution.csv but not found")
            else:
                rows[image_id] = tokens[0]
    for stem in sorted(set(stems) - listed):
        problems.add(base / stems[stem], "not listed in LOC_val_solution.csv (no label)")
    ordered = sorted(rows, key=lambda s: (_val_number(s), s))
    return [stems[s] for s in ordered], [index[rows[s]] for s in ordered]


def _devkit_val(base: Path, devkit: Path, classes: _Classes, problems: Problems) -> Tuple[List[str], List[int]]:
    """Flat val + devkit: line k of the ground truth is the ILSVRC2012_ID of val image k, mapped via its WNID."""
    gt_path = devkit / GROUND_TRUTH
    id_to_wnid, _ = _read_meta(devkit)
    index = classes.index()
    files = _flat_val(base, problems)
    paths: List[str] = []
    labels: List[int] = []
    lines = read_lines(gt_path)
    for k, line in enumerate(lines, 1):
        try:
            gt = int(line)
        except ValueError:
            raise WriterError(f"{gt_path}: line {k} is not an integer ILSVRC2012_ID: {line[:30]!r}; "
                              "re-extract the devkit") from None
        wnid = id_to_wnid.get(gt)
        if wnid is None or wnid not in index:
            problems.add(f"{gt_path} line {k}", f"unknown class: ILSVRC2012_ID {gt} is not a leaf synset of meta.mat"
                         if wnid is None else f"unknown class {wnid} (not in {classes.source})")
        elif k not in files:
            problems.add(base / f"ILSVRC2012_val_{k:08d}.JPEG", f"listed in {GROUND_TRUTH} (line {k}) but not found")
        else:
            paths.append(files[k])
            labels.append(index[wnid])
    for number in sorted(n for n in files if not 1 <= n <= len(lines)):
        problems.add(base / files[number], f"no line for it in {GROUND_TRUTH} (no label)")
    return paths, labels


def _val_number(name: str) -> int:
    m = _VAL_NAME.search(Path(name).stem)
    return int(m.group(1)) if m else -1


def _ids(split: str, paths: List[str]) -> Tuple[np.ndarray, str]:
    """Original ids: the val number, or WNID digits x 1e10 + image number for train (both invertible)."""
    if split == "val":
        numbers = [_val_number(p) for p in paths]
        if all(n >= 0 for n in numbers):
            return np.asarray(numbers, dtype=np.int64), "val image number (ILSVRC2012_val_00000001.JPEG -> 1)"
    else:
        parsed = [_TRAIN_NAME.match(Path(p).stem) for p in paths]
        if all(parsed):
            ids = [int(m.group(1)) * 10**10 + int(m.group(2)) for m in parsed]  # type: ignore[union-attr]
            return np.asarray(ids, dtype=np.int64), ("WNID digits x 1e10 + image number "
                                                      "(n01440764_10026.JPEG -> 14407640000010026)")
    return np.arange(len(paths), dtype=np.int64), "position in the reader's sorted listing"


@register_reader("imagenet", splits=("train", "val"), options=ImageNetOptions,
                 summary="ImageNet-1k (ILSVRC2012): 1,281,167 train / 50,000 val, 1000 classes")
def read_imagenet(root: Optional[Path], split: str, opts: ImageNetOptions) -> SplitIndex:
    """Index one split of ImageNet-1k; see the module docstring for the accepted layouts."""
    root = require_root(root, "imagenet", "train/ and val/ (or the Kaggle ILSVRC/ tree)")
    problems = Problems()
    devkit = _find_devkit(root, opts)
    base = _images_dir(root, split)
    layout = "folders"
    if split == "train":
        classes = _classes(root, opts, devkit, None)
        paths, labels = _folder_samples(base, classes, problems)
    else:
        layout = _detect_val_layout(root, base, opts, devkit)
        if layout == "devkit" and devkit is None:
            raise WriterError(f"val_layout=devkit but no devkit under --root {root} (meta.mat + {GROUND_TRUTH}); "
                              "pass devkit=PATH")
        classes = _classes(root, opts, devkit, base if layout == "folders" else None)
        if layout == "folders":
            paths, labels = _folder_samples(base, classes, problems)
            order = sorted(range(len(paths)), key=lambda i: (_val_number(paths[i]), paths[i]))
            paths, labels = [paths[i] for i in order], [labels[i] for i in order]
        elif layout == "kaggle":
            paths, labels = _kaggle_val(root, base, classes, problems)
        else:
            paths, labels = _devkit_val(base, devkit, classes, problems)  # type: ignore[arg-type]
    ids, id_kind = _ids(split, paths)
    keep = first_occurrences(ids.tolist(), [str(base / p) for p in paths], problems, "image id")
    paths = [p for p, k in zip(paths, keep) if k]
    require_nonempty(len(paths), "imagenet", split, base, problems)
    return SplitIndex(
        dataset="imagenet", split=split, ids=ids[keep], labels=np.asarray(labels, dtype=np.int64)[keep],
        class_names=classes.names, source=FileImages(base, paths), id_kind=id_kind,
        options={**asdict(opts), "layout": layout, "class_list": classes.source, "images": str(base),
                 "wnids": classes.wnids},
        skipped=problems.items,
    )
