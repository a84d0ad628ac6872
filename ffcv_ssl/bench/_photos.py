"""Benchmark images from real photographs: ImageNet-like JPEGs (~500x375, q90) and a <=256-px variant.

No dataset may be downloaded here, so the pixels come from the colour photographs that ship inside
scikit-image and scikit-learn (astronaut, cat, coffee, rocket, motorcycles, china, flower, ...). Image
``i`` is a random crop of one of them with an ImageNet-like shape (landscape 500x375 or 500x333 most of
the time, portrait or square otherwise), resized with PIL's bicubic filter; the crop is a pure function
of (seed, i), so the data is identical on every machine. The images are stored the way a real
ImageNet beton is: ``write_split`` encodes them with ffcv's own JPEG encoder (OpenCV, quality 90,
4:2:0), once with the longer side <= 500 and once <= 256 (ffcv's INTER_AREA shrink). The JPEG files
the torchvision baselines read are the beton's own bytes, exported, so every contender decodes
exactly the same JPEGs.

Realism check: ffcv's published full-ImageNet betons average 65.47 GB / 1.28 M = 51 kB per image at
<=512 px q90 and 22.01 GB / 1.28 M = 17 kB at <=256 px (docs.ffcv.io, benchmarks); ``BenchData.stats`` reports
ours, which land close to those.

Everything is cached under ``data_dir`` in a folder named by (images, seed, version), built in a
temporary folder and renamed when complete, so an interrupted build is never reused.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import UserError

VERSION = 1
# (package, file) of every colour photograph used; grey-level and synthetic images are left out.
PHOTOS: Tuple[Tuple[str, str], ...] = (
    ("skimage", "astronaut.png"), ("skimage", "chelsea.png"), ("skimage", "coffee.png"),
    ("skimage", "rocket.jpg"), ("skimage", "hubble_deep_field.jpg"), ("skimage", "motorcycle_left.png"),
    ("skimage", "motorcycle_right.png"), ("skimage", "retina.jpg"), ("skimage", "ihc.png"),
    ("sklearn", "china.jpg"), ("sklearn", "flower.jpg"),
)
# ImageNet-like stored shapes (long side 500): (short side, probability); landscape 3 times in 4
SHAPES: Tuple[Tuple[int, float], ...] = ((375, 0.7), (333, 0.2), (500, 0.1))
LANDSCAPE_P = 0.75
CROP_AREA = (0.5, 1.0)        # fraction of the largest crop of the right shape that fits in the photo
SIZES = (500, 256)            # longer side of the two betons


def _photo_path(package: str, name: str) -> Path:
    if package == "skimage":
        import skimage

        return Path(skimage.__file__).parent / "data" / name
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "images" / name


@lru_cache(maxsize=None)
def load_photo(index: int) -> np.ndarray:
    """RGB uint8 pixels of photograph ``index`` of ``PHOTOS`` (read once per process)."""
    from PIL import Image

    package, name = PHOTOS[index]
    path = _photo_path(package, name)
    if not path.exists():
        raise UserError(f"benchmark photograph {path} is missing; reinstall {package}")
    with Image.open(path) as img:
        return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def crop_geometry(seed: int, pos: int, photo_hw: Tuple[int, int], long_side: int = 500
                  ) -> Tuple[Tuple[float, float, float, float], Tuple[int, int]]:
    """The crop box (left, top, right, bottom) in the photo and the output (height, width) of image ``pos``."""
    rng = np.random.default_rng([seed, pos])
    short = SHAPES[int(rng.choice(len(SHAPES), p=[p for _, p in SHAPES]))][0]
    short = int(round(short * long_side / 500))
    out_h, out_w = (short, long_side) if rng.random() < LANDSCAPE_P else (long_side, short)
    ph, pw = photo_hw
    aspect = out_w / out_h
    ch = min(float(ph), pw / aspect)
    cw = ch * aspect
    shrink = np.sqrt(rng.uniform(*CROP_AREA))
    ch, cw = ch * shrink, cw * shrink
    top = rng.uniform(0.0, ph - ch)
    left = rng.uniform(0.0, pw - cw)
    return (left, top, left + cw, top + ch), (out_h, out_w)


@dataclass
class PhotoCrops:
    """``ImageSource`` for ``write_split``: image ``pos`` is a crop of photograph ``pos % len(PHOTOS)``.

    Picklable (only numbers): writer workers rebuild the pixels themselves.
    """

    seed: int
    count: int
    long_side: int = 500

    def label(self, pos: int) -> int:
        return pos % len(PHOTOS)

    def load(self, pos: int, draft_max_side: Optional[int] = None) -> np.ndarray:
        from PIL import Image

        photo = load_photo(self.label(pos))
        (left, top, right, bottom), (out_h, out_w) = crop_geometry(self.seed, pos, photo.shape[:2], self.long_side)
        # cut the region (plus the bicubic filter's margin) first: resizing from the whole photo is 10x slower
        margin = 4 + int(np.ceil(max((right - left) / out_w, (bottom - top) / out_h)) * 2)
        y0, x0 = max(0, int(top) - margin), max(0, int(left) - margin)
        y1, x1 = min(photo.shape[0], int(np.ceil(bottom)) + margin), min(photo.shape[1], int(np.ceil(right)) + margin)
        region = photo[y0:y1, x0:x1]
        box = (left - x0, top - y0, right - x0, bottom - y0)
        if np.random.default_rng([self.seed, pos, 1]).random() < 0.5:
            region = region[:, ::-1]
            box = (region.shape[1] - box[2], box[1], region.shape[1] - box[0], box[3])
        img = Image.fromarray(np.ascontiguousarray(region)).resize((out_w, out_h), Image.BICUBIC, box=box)
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))

    def describe(self, pos: int) -> str:
        return f"{PHOTOS[self.label(pos)][1]} crop #{pos}"


def photo_index(count: int, seed: int):
    """The ``SplitIndex`` of ``count`` photo crops; the label is the photograph a crop comes from."""
    from dataset_writers.records import SplitIndex

    source = PhotoCrops(seed, count)
    return SplitIndex(dataset="bench-photos", split="train", ids=np.arange(count),
                      labels=np.array([source.label(i) for i in range(count)]),
                      class_names=[Path(name).stem for _, name in PHOTOS], source=source,
                      id_kind="crop number")


@dataclass
class BenchData:
    """The cached benchmark data of one (images, seed): for each size, a beton and its JPEGs as files."""

    root: Path
    betons: Dict[int, Path]
    files: Dict[int, List[Path]]
    labels: List[int]
    stats: Dict[str, Dict[str, float]]


def stored_jpegs(beton: Path) -> List[Tuple[int, int, int, int]]:
    """(offset, size, height, width) of the stored JPEG of every sample, from ffcv's own reader (validated first)."""
    from dataset_writers.beton_check import open_beton

    from ..ffcv_compat import IMAGE_MODES

    reader = open_beton(beton)
    if "image" not in reader.field_names:
        raise UserError(f"{beton}: no 'image' field; rebuild the benchmark data")
    meta = reader.metadata[reader.metadata.dtype.names[reader.field_names.index("image")]]
    size_of = {int(p): int(s) for p, s in zip(reader.alloc_table["ptr"], reader.alloc_table["size"])}
    out = []
    for i, row in enumerate(meta):
        if int(row["mode"]) != IMAGE_MODES["jpg"]:
            raise UserError(f"{beton}: sample {i} is not stored as JPEG; rebuild the benchmark data")
        ptr = int(row["data_ptr"])
        out.append((ptr, size_of[ptr], int(row["height"]), int(row["width"])))
    return out


def export_jpegs(beton: Path, out_dir: Path, labels: List[int], progress=None) -> List[Path]:
    """Write every stored JPEG of ``beton`` byte for byte to ``out_dir/<label>/<i>.jpg`` (ImageFolder layout)."""
    entries = stored_jpegs(beton)
    data = np.memmap(beton, dtype=np.uint8, mode="r")
    paths = []
    task = progress.add_task(f"export {beton.name}", total=len(entries), rate="") if progress else None
    for i, (ptr, size, _, _) in enumerate(entries):
        path = out_dir / f"{labels[i]:02d}" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[ptr:ptr + size].tobytes())
        paths.append(path)
        if task is not None and (i % 64 == 0 or i == len(entries) - 1):
            progress.update(task, completed=i + 1)
    del data
    return paths


def _stats(beton: Path) -> Dict[str, float]:
    entries = stored_jpegs(beton)
    sizes = np.array([e[1] for e in entries], np.float64)
    pixels = np.array([e[2] * e[3] for e in entries], np.float64)
    return {"images": len(entries), "mean_kb": round(sizes.mean() / 1e3, 1),
            "mean_megapixels": round(pixels.mean() / 1e6, 4),
            "max_side": int(max(max(e[2], e[3]) for e in entries))}


def data_folder(data_dir: Path, images: int, seed: int) -> Path:
    return Path(data_dir) / f"photos-n{images}-s{seed}-v{VERSION}"


def build_bench_data(data_dir: Path, images: int, seed: int = 0, workers: Optional[int] = None) -> BenchData:
    """Build (or reuse) the betons at 500 and 256 px and their JPEG files; see the module docstring."""
    from dataset_writers.write import ImageOptions, write_split

    from ..console import progress_bar

    if images < 1:
        raise UserError(f"--images {images} must be >= 1")
    final = data_folder(data_dir, images, seed)
    done = final / "complete.json"
    if not done.exists():
        if final.exists():
            shutil.rmtree(final)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            index = photo_index(images, seed)
            t0 = time.perf_counter()
            for side in SIZES:
                write_split(index, tmp / f"photos{side}.beton", workers=workers, description=f"photos {side} px",
                            image=ImageOptions(max_resolution=side, write_mode="jpg", jpeg_quality=90))
            with progress_bar("rate") as bar:
                for side in SIZES:
                    export_jpegs(tmp / f"photos{side}.beton", tmp / f"jpeg{side}", list(index.labels), bar)
            record = {"images": images, "seed": seed, "version": VERSION, "photos": [n for _, n in PHOTOS],
                      "seconds": round(time.perf_counter() - t0, 1),
                      "stats": {str(side): _stats(tmp / f"photos{side}.beton") for side in SIZES}}
            (tmp / "complete.json").write_text(json.dumps(record, indent=1))
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    record = json.loads(done.read_text())
    labels = [i % len(PHOTOS) for i in range(images)]
    files = {side: [final / f"jpeg{side}" / f"{labels[i]:02d}" / f"{i:06d}.jpg" for i in range(images)]
             for side in SIZES}
    return BenchData(root=final, betons={side: final / f"photos{side}.beton" for side in SIZES}, files=files,
                     labels=labels, stats={str(k): v for k, v in record["stats"].items()})
