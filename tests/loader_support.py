"""Helpers shared by the loader tests: small real betons of photographs, the stored bytes, PIL references.

Betons are written by the project's own writer (``write_split``) from real photographs (scikit-image's
and scikit-learn's sample images) resized to varied, non-square sizes, so JPEG decoding, crops and
resizes see real image statistics. The references here never use our kernels: PIL decodes the stored
JPEG, crops and resizes it the way torchvision's ``RandomResizedCrop`` does on a PIL image.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from dataset_writers.records import SplitIndex
from dataset_writers.write import ImageOptions, write_split

ID_OFFSET = 1000          # stored id = ID_OFFSET + position in the beton
NUM_CLASSES = 5


@dataclass
class ListImages:
    """An ``ImageSource`` over a list of differently sized (H, W, 3) uint8 images."""

    images: List[np.ndarray]

    def load(self, pos: int, draft_max_side: Optional[int] = None) -> np.ndarray:
        return self.images[pos]

    def describe(self, pos: int) -> str:
        return f"photos[{pos}]"


def photographs() -> List[np.ndarray]:
    import skimage.data
    from sklearn.datasets import load_sample_image

    out = [getattr(skimage.data, n)()[..., :3] for n in ("astronaut", "chelsea", "coffee", "rocket")]
    out += [load_sample_image(f"{n}.jpg") for n in ("china", "flower")]
    return [np.ascontiguousarray(x) for x in out]


def varied_photos(n: int, side_range: Tuple[int, int], seed: int = 0) -> List[np.ndarray]:
    """``n`` random crops of the photographs, resized to random (H, W) with sides in ``side_range``."""
    rng = np.random.default_rng(seed)
    base = photographs()
    out = []
    for k in range(n):
        p = base[k % len(base)]
        H, W, _ = p.shape
        ch, cw = int(rng.integers(H // 2, H + 1)), int(rng.integers(W // 2, W + 1))
        top, left = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
        h, w = (int(rng.integers(*side_range)) for _ in range(2))
        crop = Image.fromarray(p[top:top + ch, left:left + cw])
        out.append(np.asarray(crop.resize((w, h), Image.BILINEAR)))
    return out


def write_beton(path: Path, images: Sequence[np.ndarray], mode: str, max_resolution: int,
                levels: bool = True) -> Path:
    """A beton with image, label (position % 5), a ``coarse`` level (label // 2), source and index fields."""
    n = len(images)
    labels = np.arange(n) % NUM_CLASSES
    index = SplitIndex("photos", "train", np.arange(n) + ID_OFFSET, labels, [f"c{k}" for k in range(NUM_CLASSES)],
                       ListImages(list(images)), levels={"coarse": labels // 2} if levels else {})
    write_split(index, path, image=ImageOptions(write_mode=mode, max_resolution=max_resolution, page_size=1 << 21),
                workers=0)
    return path


def stored_images(path: Path) -> List[np.ndarray]:
    """Every stored image as PIL decodes it (JPEG) or as stored (raw), read straight from the beton file."""
    from ffcv.fields.rgb_image import IMAGE_MODES
    from ffcv.reader import Reader

    reader = Reader(str(path))
    meta = reader.metadata[f"f{reader.field_names.index('image')}"]
    sizes = {int(p): int(s) for p, s in zip(reader.alloc_table["ptr"], reader.alloc_table["size"])}
    blob = np.fromfile(str(path), dtype=np.uint8)
    out = []
    for row in meta:
        ptr, h, w = int(row["data_ptr"]), int(row["height"]), int(row["width"])
        data = blob[ptr:ptr + sizes[ptr]]
        if row["mode"] == IMAGE_MODES["jpg"]:
            img = np.asarray(Image.open(io.BytesIO(data.tobytes())).convert("RGB"))
        else:
            img = data[:h * w * 3].reshape(h, w, 3)
        assert img.shape == (h, w, 3)
        out.append(img)
    return out


def stored_modes(path: Path) -> np.ndarray:
    from ffcv.reader import Reader

    reader = Reader(str(path))
    return np.asarray(reader.metadata[f"f{reader.field_names.index('image')}"]["mode"])


def pil_view(img: np.ndarray, top: int, left: int, ch: int, cw: int, out_h: int, out_w: int, flip: bool) -> np.ndarray:
    """torchvision's ``RandomResizedCrop`` + ``RandomHorizontalFlip`` on a PIL image, with the crop given."""
    view = Image.fromarray(img).crop((left, top, left + cw, top + ch)).resize((out_w, out_h), Image.BILINEAR)
    if flip:
        view = view.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(view)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def drawn_params(recipes, heights, widths, positions, seed: int, epoch: int) -> Tuple[np.ndarray, np.ndarray]:
    """The decoder's per-(sample, view) draws, re-derived from (seed, epoch, position) with ``draw_params``."""
    from ffcv_ssl.ops.decoder import recipes_to_arrays
    from ffcv_ssl.ops.views import PARAM_FLOATS, PARAM_INTS, draw_params

    vf, vi = recipes_to_arrays(recipes)
    n = len(positions)
    pint = np.zeros((n, len(recipes), PARAM_INTS), np.int64)
    pflt = np.zeros((n, len(recipes), PARAM_FLOATS), np.float64)
    draw_params(np.asarray(positions, np.int64), np.asarray(heights, np.int64), np.asarray(widths, np.int64),
                np.uint64(seed), int(epoch), vf, vi, pint, pflt)
    return pint, pflt


def identity_stats() -> Dict[str, Tuple[float, float, float]]:
    """mean/std that make the finisher's output the uint8 values themselves, as float: (u - 0) / (1/255 * 255)."""
    return {"mean": (0.0, 0.0, 0.0), "std": (1 / 255, 1 / 255, 1 / 255)}


def views_uint8(batch_views, sizes) -> List[np.ndarray]:
    """Loader output with ``identity_stats`` -> (B, h, w, 3) uint8 per view (exact: the floats are integers)."""
    out = []
    for x, (h, w) in zip(batch_views, sizes):
        a = x.float().permute(0, 2, 3, 1).numpy()
        assert a.shape[1:3] == (h, w)
        r = np.rint(a)
        assert np.abs(a - r).max() < 1e-3
        out.append(r.astype(np.uint8))
    return out
