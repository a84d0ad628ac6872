"""Pixel corruptions of the data-quality lens (Cole et al. 2022, §4.3), plus blur and Gaussian noise.

Each takes an RGB ``uint8`` HxWx3 image, its parameters and a ``np.random.Generator`` that the chain seeds
from (corruption, parameters, seed, sample id), and returns a new ``uint8`` HxWx3 image (never a view of
the input, which may be a reader's shared array). Defaults and their sources: ``docs/corruptions.md``.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Tuple

import numpy as np
from PIL import Image

from ..errors import WriterError
from .registry import Params, param, register_corruption

# ``resize`` (the control, and the first step of ``downsample``) uses antialiased bilinear, torchvision's
# ``Resize`` default on PIL images, so it equals ``torchvision.transforms.Resize(size)`` exactly.
# The down-and-up round trip of ``downsample`` uses Lanczos (a=3, antialiased) both ways: the closest of
# Pillow's filters to an ideal low-pass, it removes what lies above 1/factor of the Nyquist frequency and
# keeps most of what lies below (bilinear would also blur the band it should keep); docs/corruptions.md.
RESIZE_FILTER = Image.Resampling.BILINEAR
ROUND_TRIP_FILTER = Image.Resampling.LANCZOS


# ----------------------------------------------------------------------------------------------- noise
@dataclass(frozen=True)
class SaltPepperParams(Params):
    p: float = param(0.09, lo=0.0, hi=1.0, doc="fraction of pixels set to black or white; ImageNet-C impulse "
                                               "noise uses 0.03-0.27, 0.09 at severity 3")


@register_corruption("salt_pepper", params=SaltPepperParams, group="noise")
def salt_pepper(image: np.ndarray, params: SaltPepperParams, rng: np.random.Generator) -> np.ndarray:
    """Each pixel independently, with probability p, becomes pure white (255,255,255) or black (0,0,0), 50/50.

    Per pixel, not per channel: the classic salt-and-pepper model (black and white dots). ImageNet-C's
    ``impulse_noise`` (skimage ``s&p``) acts per channel value and so also makes coloured dots.
    Both draws are made for every pixel whatever ``p``, so the set of hit pixels grows with ``p``.
    """
    h, w = image.shape[:2]
    hit = rng.random((h, w)) < params.p
    salt = rng.random((h, w)) < 0.5
    out = image.copy()
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


@dataclass(frozen=True)
class GaussianNoiseParams(Params):
    sigma: float = param(0.18, lo=0.0, hi=1.0, doc="std of the noise as a fraction of the 0-255 range "
                                                   "(0.18 = 45.9 grey levels, ImageNet-C severity 3)")


@register_corruption("gaussian_noise", params=GaussianNoiseParams, group="noise")
def gaussian_noise(image: np.ndarray, params: GaussianNoiseParams, rng: np.random.Generator) -> np.ndarray:
    """Add N(0, (255 sigma)^2) independently to every channel value, round to nearest, clip to [0, 255].

    ``sigma`` is in [0, 1] units of the full range, as in ImageNet-C; rounding (not ImageNet-C's truncation)
    keeps the mean unbiased.
    """
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(255.0 * params.sigma)
    return np.clip(np.rint(image.astype(np.float32) + noise), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- digital
@dataclass(frozen=True)
class JpegParams(Params):
    quality: int = param(15, lo=1, hi=100, doc="JPEG quality, 1 worst to 100 best; ImageNet-C uses 25, 18, 15, "
                                               "10, 7 (15 at severity 3), Pillow's default is 75")


@register_corruption("jpeg", params=JpegParams, group="digital")
def jpeg(image: np.ndarray, params: JpegParams, rng: np.random.Generator) -> np.ndarray:
    """Encode with Pillow's JPEG encoder at ``quality`` (IJG tables, 4:2:0 chroma, baseline) and decode back.

    Exactly what ``PIL.Image.save(f, "JPEG", quality=q)`` followed by ``Image.open`` gives; deterministic,
    ``rng`` is unused.
    """
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=params.quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.array(decoded.convert("RGB"), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ resolution
def shorter_side_size(height: int, width: int, size: int) -> Tuple[int, int]:
    """``(new_h, new_w)`` with the shorter side ``size`` and the aspect ratio kept (torchvision's rounding)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = max(1, int(size * long / short))
    return (new_long, size) if width <= height else (size, new_long)


def _pil_resize(image: np.ndarray, height: int, width: int, resample: Image.Resampling) -> np.ndarray:
    return np.array(Image.fromarray(image).resize((width, height), resample), dtype=np.uint8)


def resize_shorter(image: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size``, antialiased bilinear (``torchvision.transforms.Resize(size)`` on PIL)."""
    h, w = shorter_side_size(image.shape[0], image.shape[1], size)
    return _pil_resize(image, h, w, RESIZE_FILTER)


@dataclass(frozen=True)
class ResizeParams(Params):
    size: int = param(256, lo=1, hi=65535, doc="shorter side in pixels; 256 is the standard ImageNet "
                                               "evaluation resize (and ImageNet-C's)")


@register_corruption("resize", params=ResizeParams, group="resolution")
def resize(image: np.ndarray, params: ResizeParams, rng: np.random.Generator) -> np.ndarray:
    """Shorter side to ``size``, aspect kept, antialiased bilinear: the control for ``downsample``.

    Identical to ``torchvision.transforms.Resize(size)`` on a PIL image. Deterministic, ``rng`` is unused.
    """
    return resize_shorter(image, params.size)


@dataclass(frozen=True)
class DownsampleParams(Params):
    size: int = param(256, lo=1, hi=65535, doc="shorter side in pixels before and after the round trip")
    factor: float = param(2.0, lo=1.0, doc="down by this factor and back up; the paper's "
                                                       "conditions are 2 and 4; 1 is the resize control")

    def check(self) -> None:
        if self.factor > self.size:
            raise WriterError(f"downsample: factor={self.factor:g} is larger than size={self.size}; the "
                              "downsampled image would have no pixels (use factor <= size)")


@register_corruption("downsample", params=DownsampleParams, group="resolution")
def downsample(image: np.ndarray, params: DownsampleParams, rng: np.random.Generator) -> np.ndarray:
    """``resize(size)``, then Lanczos down to ``round(side / factor)`` and Lanczos back up to the same size.

    The round trip removes what the small image cannot hold (spatial frequencies above 1/factor of the
    Nyquist frequency) and keeps the size, so it differs from the ``resize`` control in information, not
    in shape. ``factor=1`` equals ``resize``. Deterministic, ``rng`` is unused.
    """
    base = resize_shorter(image, params.size)
    h, w = base.shape[:2]
    small = _pil_resize(base, max(1, round(h / params.factor)), max(1, round(w / params.factor)), ROUND_TRIP_FILTER)
    return _pil_resize(small, h, w, ROUND_TRIP_FILTER)


# ------------------------------------------------------------------------------------------------ blur
def gaussian_radius(sigma: float) -> int:
    """Kernel half-width: 4 sigma, rounded as ``scipy.ndimage.gaussian_filter`` (truncate=4) does."""
    return int(4.0 * sigma + 0.5)


@dataclass(frozen=True)
class GaussianBlurParams(Params):
    sigma: float = param(3.0, lo=0.0, hi=100.0, doc="std of the Gaussian kernel in pixels of the image it "
                                                    "meets; ImageNet-C uses 1, 2, 3, 4, 6 at 224 px (3 at "
                                                    "severity 3)")


@register_corruption("gaussian_blur", params=GaussianBlurParams, group="blur")
def gaussian_blur(image: np.ndarray, params: GaussianBlurParams, rng: np.random.Generator) -> np.ndarray:
    """Isotropic Gaussian blur of each channel: kernel exp(-x^2 / 2 sigma^2), normalised, cut at 4 sigma.

    Borders are mirrored (``d c b a | a b c d``), so the result equals ``scipy.ndimage.gaussian_filter``
    (mode ``reflect``, truncate 4) up to float rounding; computed in float32 by OpenCV for speed, then
    rounded to nearest. ``sigma=0`` returns a copy. Deterministic, ``rng`` is unused.
    """
    if params.sigma == 0:
        return image.copy()
    k = 2 * gaussian_radius(params.sigma) + 1
    import cv2      # here, not at module level: the spec parser (and the report) load this module without cv2

    out = cv2.GaussianBlur(image.astype(np.float32), (k, k), sigmaX=params.sigma, sigmaY=params.sigma,
                           borderType=cv2.BORDER_REFLECT)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
