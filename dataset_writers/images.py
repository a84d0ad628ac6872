"""Robust image loading for the writers: every official quirk becomes an RGB uint8 array or a clear error.

ImageNet alone ships a PNG named ``.JPEG``, 22 CMYK JPEGs, many grayscale JPEGs and EXIF-rotated photos
(the first two listed in TensorFlow's ``build_imagenet_data.py``; see ``docs/datasets.md``). Pillow sniffs
the real format from the bytes, converts CMYK (including Adobe-inverted CMYK) and ``L``/``P``/``RGBA`` to RGB,
and raises on truncated data.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageError

# Never accept silently truncated JPEGs (Pillow's default, but a global that other code may flip).
ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.MAX_IMAGE_PIXELS = 20_000 * 20_000


def open_rgb(source, *, exif_transpose: bool = True, draft_max_side: Optional[int] = None) -> np.ndarray:
    """Decode ``source`` (a path, or a binary file object) to a contiguous RGB ``uint8`` HxWx3 array.

    Args:
        source: file path or file object.
        exif_transpose: rotate/flip as the EXIF orientation tag says, so pixels look as in a viewer.
        draft_max_side: if set, let libjpeg decode at a 1/2, 1/4 or 1/8 DCT scale as long as the longer
            side stays >= this value (a large speed-up when the writer shrinks images anyway).

    Raises:
        ImageError: unreadable, truncated or not an image; the message names the file.
    """
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<bytes>")
    try:
        with Image.open(source) as img:
            if draft_max_side and img.format == "JPEG":
                w, h = img.size
                scale = draft_max_side / max(w, h)
                if scale < 0.5:
                    img.draft("RGB", (max(1, int(w * scale + 0.999)), max(1, int(h * scale + 0.999))))
            img.load()
            if exif_transpose:
                img = ImageOps.exif_transpose(img)
            if img.mode != "RGB":
                img = _to_rgb(img)
            array = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(name, "file not found") from None
    except PermissionError:     # an OSError too, but not a decoding problem: say what it is
        raise ImageError(name, "permission denied; make it readable (chmod a+r)") from None
    except UnidentifiedImageError:
        raise ImageError(name, "not a recognised image file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(name, f"cannot decode ({exc})") from None
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise ImageError(name, f"decoded to an unexpected shape {array.shape}")
    return np.ascontiguousarray(array)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Grayscale, palette, CMYK, 16-bit and alpha images to RGB (alpha composited on black, as PIL does)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        img = Image.fromarray(np.clip(arr * (255.0 / max(hi, 1.0)), 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")
