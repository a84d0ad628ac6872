"""The rehearsal datasets: the four official layouts at a thousandth of their size, from real photographs.

``ffcv-ssl rehearse`` runs the study's sweep files unchanged on these instead of the real roots, so every
reader, label table and evaluation sees the label structure that breaks things at full scale:

* >= 100 classes where the real dataset has many (ImageNet, iNat21, Places365: 120 each), with a long
  tail: the last class ids have one or two training images, so a small label budget (10, 50 images)
  leaves many classes, the highest class id included, without any training sample, while every class
  is in the validation split;
* iNat21's 7 taxonomy levels (kingdom ... species) with a genus name shared by two kingdoms;
* Places365's scene hierarchy (3 / 16 classes) as the official flag sheet, a category flagged twice;
* both GLC20 packagings (the sweeps read the repackaged one: only it has a val subset);
* the layouts' quirks that ``dataset_writers`` handles: ImageNet's PNG named .JPEG, CMYK and grayscale
  JPEGs, an EXIF-rotated JPEG, Kaggle's unsorted CSV with several boxes per image, the devkit's meta.mat
  (WordNet-like tree, IDs not in WNID order, a synset with two parents); iNat21's null
  coordinates and shuffled JSON; Places365's shuffled train list and flat val folder.

Images are small (64 x 48 px; GLC20 patches keep their fixed 256 x 256) crops and tints of the
photographs in ``photos.py``; each class has its own photograph region and tint, so classes are
learnable. Everything is a function of ``seed``: the same call gives byte-identical files.
"""
from __future__ import annotations

import csv
import json
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
from PIL import Image

from ..files import atomic_write_text
from .photos import save, small_photos

DATASETS = ("imagenet", "inat21", "places365", "glc20")
MARKER = "rehearsal_fixtures.json"
FIXTURE_VERSION = 3


@dataclass(frozen=True)
class FixtureSpec:
    """Sizes of the rehearsal datasets (defaults: what ``ffcv-ssl rehearse`` uses).

    ``train`` must hold the largest scaled subset or budget of the sweeps (1M -> 1000); ``classes`` >= 100.
    """

    classes: int = 120
    train: int = 1250              # per dataset (GLC20: train subset of both regions together)
    val_per_class: int = 2
    glc_val: int = 240
    width: int = 64
    height: int = 48
    seed: int = 0

    def class_counts(self) -> np.ndarray:
        """Long-tailed training counts per class id, >= 1 each, summing to ``train``; the tail is the high ids."""
        c = np.arange(self.classes)
        weight = (1.0 - c / self.classes) ** 2
        extra = self.train - self.classes
        counts = 1 + np.floor(weight / weight.sum() * extra).astype(int)
        counts[: self.train - counts.sum()] += 1          # hand out the rounding remainder to the head
        return counts


class _ClassLook:
    """Per class: a photograph, a region of it and a tint; images are jittered crops of that region."""

    def __init__(self, rng: np.random.Generator, classes: int):
        self.sources = small_photos(256)
        self.photo = rng.integers(len(self.sources), size=classes)
        self.centre = rng.uniform(0.25, 0.75, size=(classes, 2))
        self.tint = rng.uniform(0.6, 1.25, size=(classes, 3))

    def image(self, rng: np.random.Generator, label: int, width: int, height: int) -> np.ndarray:
        src = self.sources[int(self.photo[label])]
        h, w = src.shape[:2]
        aspect = width / height
        ch = int(min(h, w / aspect) * rng.uniform(0.35, 0.6))
        cw = int(ch * aspect)
        cy = int((self.centre[label, 0] + rng.normal(0, 0.05)) * h) - ch // 2
        cx = int((self.centre[label, 1] + rng.normal(0, 0.05)) * w) - cw // 2
        y, x = int(np.clip(cy, 0, h - ch)), int(np.clip(cx, 0, w - cw))
        crop = np.asarray(Image.fromarray(src[y: y + ch, x: x + cw]).resize((width, height), Image.BILINEAR))
        tinted = crop.astype(np.float32) * self.tint[label] * rng.uniform(0.9, 1.1)
        return np.clip(tinted, 0, 255).astype(np.uint8)


def _train_labels(spec: FixtureSpec) -> List[int]:
    return [c for c, n in enumerate(spec.class_counts()) for _ in range(int(n))]


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(int=int(rng.integers(2**62)) << 64 | int(rng.integers(2**62)), version=4))


# ------------------------------------------------------------------------------------------------ ImageNet

def build_imagenet(root: Path, spec: FixtureSpec) -> Dict[str, int]:
    """Kaggle layout: ILSVRC/Data/CLS-LOC/{train/<wnid>/,val/}, LOC_synset_mapping.txt, LOC_val_solution.csv."""
    rng = np.random.default_rng([spec.seed, 1])
    look = _ClassLook(rng, spec.classes)
    wnids = [f"n{1440764 + 9973 * c:08d}" for c in range(spec.classes)]      # sorted == class order
    base = root / "ILSVRC" / "Data" / "CLS-LOC"
    quirks = {0: "png", 1: "cmyk", 2: "gray", 3: "exif"}                     # first image of classes 0..3
    seen: Dict[int, int] = {}
    for label in _train_labels(spec):
        k = seen.get(label, 0)
        seen[label] = k + 1
        num = 10 + 37 * k + label % 7
        kind = quirks.get(label, "jpeg") if k == 0 else "jpeg"
        save(base / "train" / wnids[label] / f"{wnids[label]}_{num}.JPEG",
             look.image(rng, label, spec.width, spec.height), kind)
    val = [c for c in range(spec.classes) for _ in range(spec.val_per_class)]
    val = [val[i] for i in rng.permutation(len(val))]
    rows = []
    for k, label in enumerate(val, 1):
        kind = {3: "gray", 7: "cmyk"}.get(k, "jpeg")
        save(base / "val" / f"ILSVRC2012_val_{k:08d}.JPEG", look.image(rng, label, spec.width, spec.height), kind)
        boxes = " ".join(f"{wnids[label]} {x} {y} {x + 20} {y + 16}" for x, y in rng.integers(0, 40, (1 + k % 2, 2)))
        rows.append((f"ILSVRC2012_val_{k:08d}", boxes + " "))
    rows = [rows[i] for i in rng.permutation(len(rows))]                      # Kaggle's CSV is not sorted
    with open(root / "LOC_val_solution.csv", "w", newline="") as fp:
        w = csv.writer(fp)
        w.writerow(["ImageId", "PredictionString"])
        w.writerows(rows)
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} synset {c}, a rehearsal class\n"
                                                         for c, w in enumerate(wnids)))
    write_devkit(root / "ILSVRC2012_devkit_t12" / "data", wnids, [wnids[label] for label in val])
    return {"classes": spec.classes, "train": len(_train_labels(spec)), "val": len(val)}


WORDNET_WIDTHS = (2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 22, 27, 33, 40, 50, 60, 80)   # synsets per depth 1 ... 17


def write_devkit(data_dir: Path, wnids: List[str], val_wnids: List[str]) -> None:
    """The devkit's ``meta.mat`` (a WordNet-like tree 18 levels deep, leaves at two depths, one synset with two
    parents, ILSVRC2012_IDs not in WNID order) and the val ground truth by ILSVRC2012_ID."""
    import scipy.io

    data_dir.mkdir(parents=True, exist_ok=True)
    n = len(wnids)
    leaf_id = {w: 1 + (7 * k) % n for k, w in enumerate(wnids)}           # a permutation: the "index trap"
    nodes: Dict[int, Tuple[str, List[int]]] = {leaf_id[w]: (w, []) for w in wnids}
    nxt = n + 1

    def add(wnid: str) -> int:
        nonlocal nxt
        nodes[nxt] = (wnid, [])
        nxt += 1
        return nxt - 1

    root = add("n00001740")                                                # entity
    # WordNet is deep (the paper's Fig 5 reads ImageNet at depths 4 ... 15): 17 levels of synsets, each a
    # coarsening of the next (nodes keyed by their path, so it is a tree), leaves at depth 18 or 17
    node_of: Dict[Tuple[int, ...], int] = {(): root}
    for k, w in enumerate(wnids):
        path: Tuple[int, ...] = ()
        parent = root
        for d, m in enumerate(WORDNET_WIDTHS[: len(WORDNET_WIDTHS) - (k % 5 == 0)]):
            path = path + (k * m // n,)
            if path not in node_of:
                node_of[path] = add(f"n00{100000 + len(node_of):06d}")
                nodes[parent][1].append(node_of[path])
            parent = node_of[path]
        nodes[parent][1].append(leaf_id[w])
    depth3 = [v for p, v in node_of.items() if len(p) == 3]
    nodes[node_of[(1,)]][1].append(depth3[0])                              # a synset with two parents
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    rec = np.zeros((len(nodes), 1), dtype=[(f, object) for f in fields])
    for row, (sid, (wnid, children)) in enumerate(sorted(nodes.items())):
        rec[row, 0] = (sid, wnid, f"synset {wnid}", "a gloss", len(children), np.array(children, dtype=np.uint16),
                       0 if not children else 1, 1300 if not children else 0)
    scipy.io.savemat(str(data_dir / "meta.mat"), {"synsets": rec})
    (data_dir / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{leaf_id[w]}\n" for w in val_wnids))


# ------------------------------------------------------------------------------------------------ iNat21

INAT_LEVEL_SIZES = (("kingdom", 3), ("phylum", 8), ("class", 16), ("order", 30), ("family", 50), ("genus", 80))


def inat_taxonomy(classes: int) -> List[Dict[str, str]]:
    """A valid 7-level tree over ``classes`` species (each level a monotone coarsening of the next).

    Genus names repeat across kingdoms (``Morus`` is a bird and a plant in the real iNat21): the reader
    must key taxa by their full path.
    """
    out = []
    for c in range(classes):
        entry = {}
        for level, n in INAT_LEVEL_SIZES:
            idx = c * n // classes
            entry[level] = f"Genus{idx % (n // 2)}" if level == "genus" else f"{level.capitalize()}{idx}"
        entry["specific_epithet"] = f"species{c}"
        out.append(entry)
    return out


def build_inat21(root: Path, spec: FixtureSpec) -> Dict[str, int]:
    """train.json / train_mini.json / val.json (COCO-like, shuffled, some null coordinates) + image folders."""
    rng = np.random.default_rng([spec.seed, 2])
    look = _ClassLook(rng, spec.classes)
    cats = []
    for cid, tax in enumerate(inat_taxonomy(spec.classes)):
        d = {"id": cid, "name": f"{tax['genus']} {tax['specific_epithet']}", "common_name": f"species {cid}",
             "supercategory": tax["kingdom"], **tax}
        d["image_dir_name"] = f"{cid:05d}_" + "_".join(tax[lv] for lv, _ in INAT_LEVEL_SIZES) + f"_{tax['specific_epithet']}"
        cats.append(d)
    splits: Dict[str, List[Tuple[int, int, str]]] = {"train": [], "train_mini": [], "val": []}
    next_id, seen = 0, {}
    for label in _train_labels(spec):
        u = _uuid(rng)
        splits["train"].append((next_id, label, u))
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= 2:
            splits["train_mini"].append((next_id, label, u))                  # reuses train ids and files
        next_id += 1
    for label in range(spec.classes):
        for _ in range(spec.val_per_class):
            splits["val"].append((next_id, label, _uuid(rng)))
            next_id += 1
    for split in ("train", "val"):
        for image_id, label, u in splits[split]:
            save(root / split / cats[label]["image_dir_name"] / f"{u}.jpg",
                 look.image(rng, label, spec.width, spec.height))
    for split, items in splits.items():
        folder = "val" if split == "val" else "train"
        images = [{"id": i, "width": spec.width, "height": spec.height, "license": 1,
                   "file_name": f"{folder}/{cats[label]['image_dir_name']}/{u}.jpg",
                   "latitude": None if i % 4 == 0 else 37.8651, "longitude": None if i % 4 == 0 else -119.5388,
                   "location_uncertainty": None if i % 4 == 0 else 977, "date": "2018-09-18 10:52:00+00:00"}
                  for i, label, u in items]
        anns = [{"id": i, "image_id": i, "category_id": label} for i, label, _ in items]
        order = rng.permutation(len(images))
        data = {"info": {"year": 2021, "version": "2021", "description": "ffcv-ssl rehearsal fixture"},
                "images": [images[i] for i in order], "annotations": [anns[i] for i in order],
                "categories": cats, "licenses": [{"id": 1, "name": "CC BY", "url": ""}]}
        (root / f"{split}.json").write_text(json.dumps(data))
    return {"classes": spec.classes, "train": len(splits["train"]), "val": len(splits["val"])}


# ------------------------------------------------------------------------------------------------ Places365

PLACES3 = ["indoor", "outdoor, natural", "outdoor, man-made"]
PLACES16 = [f"scene group {k}" for k in range(16)]
PLACES16_PARENT = [0] * 6 + [1] * 4 + [2] * 6        # as the official sheet: 6 indoor, 4 natural, 6 man-made
PLACES_HIERARCHY = "scene_hierarchy_places365.csv"


def places_categories(classes: int) -> List[str]:
    """``/a/name`` paths; every fifth has an indoor/outdoor sub-folder as in ``/a/apartment_building/outdoor``."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [f"/{letters[c % 26]}/scene_{c}" + ("/outdoor" if c % 5 == 0 else "") for c in range(classes)]


def build_places365(root: Path, spec: FixtureSpec) -> Dict[str, int]:
    """Official file lists + data_256/ and flat val_256/, and the scene-hierarchy flag sheet as CSV."""
    rng = np.random.default_rng([spec.seed, 3])
    look = _ClassLook(rng, spec.classes)
    cats = places_categories(spec.classes)
    root.mkdir(parents=True, exist_ok=True)
    (root / "categories_places365.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(cats)))
    train, seen = [], {}
    for label in _train_labels(spec):
        seen[label] = seen.get(label, 0) + 1
        rel = f"{cats[label].lstrip('/')}/{seen[label]:08d}.jpg"
        save(root / "data_256" / rel, look.image(rng, label, spec.width, spec.height))
        train.append(f"/{rel} {label}")
    val_labels = [c for c in range(spec.classes) for _ in range(spec.val_per_class)]
    val = []
    for k, label in enumerate(rng.permutation(val_labels).tolist(), 1):
        save(root / "val_256" / f"Places365_val_{k:08d}.jpg", look.image(rng, label, spec.width, spec.height))
        val.append(f"Places365_val_{k:08d}.jpg {label}")
    (root / "places365_train_standard.txt").write_text("\n".join(train[i] for i in rng.permutation(len(train))) + "\n")
    (root / "places365_val.txt").write_text("\n".join(val) + "\n")
    with open(root / PLACES_HIERARCHY, "w", newline="") as fp:
        w = csv.writer(fp)
        w.writerow(["Places365 scene hierarchy: 1 = the category belongs to the column's class"] + [""] * 19)
        w.writerow(["category"] + PLACES3 + PLACES16)
        for c, cat in enumerate(cats):
            group = c % 16                                                   # a tree: each of the 16 groups
            parent = PLACES16_PARENT[group]                                  # lies under one of the 3
            l1 = {parent} | ({parent + 1} if c % 7 == 0 and parent < 2 else set())   # some flagged twice, the
            l2 = {group}                                                     # first flag is the parent
            w.writerow([f"'{cat}'"] + [int(i in l1) for i in range(3)] + [int(i in l2) for i in range(16)])
    return {"classes": spec.classes, "train": len(train), "val": len(val)}


# ------------------------------------------------------------------------------------------------ GLC20

GLC_LANDCOVER = 34


def _glc_patch(rng: np.random.Generator, look: _ClassLook, code: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB (256 x 256), land cover with ``code`` at the centre inside a background of another code, altitude."""
    rgb = look.image(rng, code, 256, 256)
    bg = int((code + 1 + rng.integers(GLC_LANDCOVER - 2)) % GLC_LANDCOVER) or 1
    lc = np.full((256, 256), bg, dtype=np.uint8)
    half = int(rng.integers(20, 80))                  # the centre block is not the majority: centre != majority
    lc[128 - half: 128 + half, 128 - half: 128 + half] = code
    alt = (np.arange(256)[:, None] * 3 + np.arange(256)[None, :] - int(rng.integers(0, 300))).astype(np.int16)
    return rgb, lc, alt


def build_glc20(root: Path, spec: FixtureSpec, packaging: str = "repackaged", n_train: int = 0,
                n_val: int = 0) -> Dict[str, int]:
    """``repackaged`` (observations CSVs with a train/val subset column, jpg/tif patches per region) or
    ``original`` (occurrences CSVs, .npy patches; no val subset). Land-cover codes are long-tailed."""
    import tifffile

    rng = np.random.default_rng([spec.seed, 4, packaging == "original"])
    look = _ClassLook(rng, GLC_LANDCOVER)
    n_train = n_train or spec.train
    n_val = n_val or spec.glc_val
    weights = 1.0 / np.arange(1, GLC_LANDCOVER)
    codes = 1 + rng.choice(GLC_LANDCOVER - 1, size=n_train + n_val, p=weights / weights.sum())
    rows: Dict[str, List[str]] = {"fr": [], "us": []}
    for k, code in enumerate(codes.tolist()):
        region = "fr" if k % 3 else "us"
        obs = (10_000_000 if region == "fr" else 20_000_000) + 7919 * k + 13
        subset = "val" if k >= n_train else "train"
        rgb, lc, alt = _glc_patch(rng, look, code)
        s = str(obs)
        if packaging == "original":
            d = root / "patches" / s[-2:] / s[-4:-2]
            d.mkdir(parents=True, exist_ok=True)
            nir = np.asarray(Image.fromarray(rgb).convert("L"))
            np.save(d / f"{obs}.npy", np.dstack([rgb, nir, lc]).astype(np.uint8))
            np.save(d / f"{obs}_alti.npy", alt)
            rows[region].append(f"{obs};45.70511627197265;1.4246221780776978;{100 + code}")
        else:
            d = root / "patches" / region / s[-2:] / s[-4:-2]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(d / f"{obs}_rgb.jpg", "JPEG", quality=90)
            Image.fromarray(rgb).convert("L").save(d / f"{obs}_near_ir.jpg", "JPEG", quality=90)
            tifffile.imwrite(d / f"{obs}_altitude.tif", alt, compression="zlib")
            tifffile.imwrite(d / f"{obs}_landcover.tif", lc, compression="zlib")
            rows[region].append(f"{obs};45.705116;1.424622;{100 + code};{subset}")
    for region, lines in rows.items():
        if packaging == "original":
            (root / f"occurrences_{region}_train.csv").write_text("\n".join(["id;lat;lon;species_id"] + lines) + "\n")
            (root / f"occurrences_{region}_test.csv").write_text("id;lat;lon\n")
        else:
            obs_dir = root / "observations"
            obs_dir.mkdir(parents=True, exist_ok=True)
            (obs_dir / f"observations_{region}_train.csv").write_text(
                "\n".join(["observation_id;latitude;longitude;species_id;subset"] + lines) + "\n")
            (obs_dir / f"observations_{region}_test.csv").write_text("observation_id;latitude;longitude\n")
    if packaging == "repackaged":
        meta = root / "metadata"
        meta.mkdir(exist_ok=True)
        (meta / "landcover_original_labels.csv").write_text(
            "landcover_code;original_landcover_code;landcover_label\n"
            + "".join(f"{k};{10 + k};land cover {k}\n" for k in range(GLC_LANDCOVER)))
    return {"classes": int(len(set(codes.tolist()))), "train": n_train, "val": n_val if packaging != "original" else 0}


BUILDERS: Dict[str, Callable[[Path, FixtureSpec], Dict[str, int]]] = {
    "imagenet": build_imagenet, "inat21": build_inat21, "places365": build_places365, "glc20": build_glc20,
}


def build_rehearsal_datasets(root: Path, spec: FixtureSpec = FixtureSpec()) -> Dict[str, Dict[str, int]]:
    """``root/{imagenet,inat21,places365,glc20}`` (+ ``glc20_original``, the other packaging), built once.

    A marker file records the spec; a root built with the same spec is reused as is (the builders are
    deterministic), a different spec or an interrupted build is rebuilt from scratch.
    """
    import shutil

    root = Path(root)
    marker = root / MARKER
    want = {"version": FIXTURE_VERSION, "spec": asdict(spec)}
    if marker.is_file():
        old = json.loads(marker.read_text())
        if {k: old.get(k) for k in want} == want:
            return old["datasets"]
    for name in (*DATASETS, "glc20_original"):
        shutil.rmtree(root / name, ignore_errors=True)
    out = {name: BUILDERS[name](root / name, spec) for name in DATASETS}
    out["glc20_original"] = build_glc20(root / "glc20_original", spec, "original", n_train=60, n_val=1)
    atomic_write_text(marker, json.dumps({**want, "datasets": out}, indent=1) + "\n")
    return out
