"""Real photographs (shipped inside scikit-learn and scikit-image, no download) and images made from them.

Fixture datasets in the official layouts are built from crops and tints of these photographs, never from
flat colours, so the writer, the decoder and the augmentations see real JPEG statistics. Shared by the
test fixtures (``tests/fixtures/datasets.py``) and the rehearsal datasets (``fixtures.py``).
"""
from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image


@lru_cache(maxsize=1)
def photos() -> Tuple[np.ndarray, ...]:
    """Real RGB photographs shipped inside scikit-learn and scikit-image (no download)."""
    import skimage.data as sk
    from sklearn.datasets import load_sample_images

    out = list(load_sample_images().images)  # china.jpg, flower.jpg
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina"):
        out.append(getattr(sk, name)())
    out.append(sk.stereo_motorcycle()[0])
    return tuple(np.ascontiguousarray(p[..., :3]) for p in out)


@lru_cache(maxsize=4)
def small_photos(side: int = 256) -> Tuple[np.ndarray, ...]:
    """The photographs with their shorter side reduced to ``side`` px: crops for tiny images resize ~20x faster."""
    out = []
    for p in photos():
        h, w = p.shape[:2]
        s = side / min(h, w)
        out.append(np.asarray(Image.fromarray(p).resize((max(side, round(w * s)), max(side, round(h * s))),
                                                        Image.BILINEAR)))
    return tuple(out)


def make_photo(rng: np.random.Generator, width: int, height: int,
               sources: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
    """A random crop (at least half the photo's size) of a random photograph, resized to width x height."""
    sources = sources or photos()
    src = sources[int(rng.integers(len(sources)))]
    h, w = src.shape[:2]
    aspect = width / height
    ch = int(min(h, w / aspect) * rng.uniform(0.5, 1.0))
    cw = int(ch * aspect)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = Image.fromarray(src[y: y + ch, x: x + cw])
    return np.asarray(crop.resize((width, height), Image.LANCZOS))


def save(path: Path, pixels: np.ndarray, kind: str = "jpeg", quality: int = 92) -> np.ndarray:
    """Write ``pixels`` as ``kind``; returns the upright RGB the writer should recover from the file.

    Kinds: ``jpeg``, ``gray`` (mode-L JPEG), ``cmyk`` (Adobe CMYK JPEG), ``png`` (PNG bytes, whatever the
    name says), ``exif`` (pixels stored rotated, with EXIF Orientation 6 saying how to turn them back).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(pixels)
    if kind == "jpeg":
        img.save(path, "JPEG", quality=quality)
        return pixels
    if kind == "gray":
        gray = img.convert("L")
        gray.save(path, "JPEG", quality=quality)
        return np.repeat(np.asarray(gray)[..., None], 3, axis=2)
    if kind == "cmyk":
        img.convert("CMYK").save(path, "JPEG", quality=quality)
        return pixels
    if kind == "png":
        img.save(path, "PNG")
        return pixels
    if kind == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 CW to display": the stored pixels are the upright ones turned CCW
        img.transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", quality=quality, exif=exif)
        return pixels
    raise ValueError(kind)


def truncate(path: Path, keep: float = 0.6) -> None:
    """Cut a file to ``keep`` of its bytes: a truncated download."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def truncated_jpeg_bytes(rng: np.random.Generator, width: int = 500, height: int = 375) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(make_photo(rng, width, height)).save(buf, "JPEG", quality=90)
    return buf.getvalue()[: int(len(buf.getvalue()) * 0.6)]
