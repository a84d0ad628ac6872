"""Crop samplers with torchvision's semantics (``RandomResizedCrop.get_params``), drawn from the counter RNG.

Upstream ffcv's sampler matches torchvision; FFCV-SSL's returns only square crops (its ``get_random_crop``
multiplies by the aspect ratio where it should divide). Ours is tested against torchvision's distribution
(KS test).
"""
import math

from numba import njit

from ._rng import uniform


@njit(cache=True)
def random_resized_crop(height, width, scale_lo, scale_hi, log_ratio_lo, log_ratio_hi, key):
    """(top, left, crop_height, crop_width) like ``torchvision.transforms.RandomResizedCrop.get_params``.

    Ten attempts at a random area fraction and log-uniform aspect ratio; then the central-crop fallback
    clamped to the ratio range. Uses draws 0..39 of ``key`` for the attempts and 40..41 for the position.
    """
    area = height * width
    for attempt in range(10):
        target_area = area * (scale_lo + (scale_hi - scale_lo) * uniform(key, 4 * attempt))
        aspect = math.exp(log_ratio_lo + (log_ratio_hi - log_ratio_lo) * uniform(key, 4 * attempt + 1))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(uniform(key, 4 * attempt + 2) * (height - h + 1))
            j = int(uniform(key, 4 * attempt + 3) * (width - w + 1))
            return i, j, h, w
    in_ratio = width / height
    ratio_lo = math.exp(log_ratio_lo)
    ratio_hi = math.exp(log_ratio_hi)
    if in_ratio < ratio_lo:
        w = width
        h = int(round(w / ratio_lo))
    elif in_ratio > ratio_hi:
        h = height
        w = int(round(h * ratio_hi))
    else:
        w = width
        h = height
    return (height - h) // 2, (width - w) // 2, h, w


@njit(cache=True)
def center_crop(height, width, ratio):
    """Square centre crop of side ``ratio * min(height, width)`` (the 0.875 evaluation crop)."""
    side = max(1, int(ratio * min(height, width)))
    return (height - side) // 2, (width - side) // 2, side, side
