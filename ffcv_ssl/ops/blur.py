"""Separable Gaussian blur of a uint8 view, in place, with torchvision's semantics (reflect borders, rounding).

torchvision's CPU ``GaussianBlur(23)`` takes 66-74 ms on a 224x224 image (one 2.5 GHz core) and
FFCV-SSL's blur is not compiled at all. Here: horizontal FIR per row into a ring of float32 rows
(one contiguous, vectorised loop: on interleaved RGB the taps are 3 values apart),
then the vertical combination written straight back into the view. Borders come from a row widened
by its reflection, so no pixel takes a scalar path. Kernel taps whose weight is
negligible (beyond 3.5 sigma, < 0.05% of the mass) are dropped, which is why small sigmas are cheap.
Optionally solarizes while writing (BYOL's second view), saving a pass.
"""
import math

import numpy as np
from numba import njit

from .color import EXACT_MATH


def kernel_size_for(side: int, fraction: float = 0.1) -> int:
    """SimCLR's kernel: ``fraction`` of the image side, made odd (224 px -> 23)."""
    k = max(3, int(round(side * fraction)))
    return k if k % 2 == 1 else k + 1


@njit(cache=True)
def gaussian_taps(sigma, max_radius, taps):
    """Normalised 1-D Gaussian ``taps[0:2r+1]`` with r = min(max_radius, ceil(3.5 sigma)); returns r."""
    r = min(max_radius, max(1, int(math.ceil(3.5 * sigma))))
    total = 0.0
    for t in range(-r, r + 1):
        v = math.exp(-0.5 * (t / sigma) ** 2)
        taps[t + r] = v
        total += v
    for t in range(2 * r + 1):
        taps[t] /= total
    return r


@njit(cache=True, inline="always")
def _reflect(i, n):
    if i < 0:
        return -i
    if i >= n:
        return 2 * (n - 1) - i
    return i


@njit(cache=True)
def scratch_floats(w, max_radius):
    """Length of ``gaussian_blur``'s ``fbuf``: one row of ``w`` pixels widened by ``max_radius`` on each side."""
    return 3 * (w + 2 * max_radius)


@njit(cache=True, fastmath=EXACT_MATH)
def _blur_row(src, dst, fbuf, w, taps, r):
    """Horizontal pass of one interleaved RGB row (uint8 -> float32 ``dst``), symmetric taps.

    The row is first widened by ``r`` reflected pixels on each side (``fbuf``), so every output value,
    borders included, comes from the same contiguous, vectorised loop. A per-pixel border loop with
    reflected indices was 0.06-0.2 ms of a 224-px view (r = 2..7): measured, docs/loading.md §4.
    Needs ``r < w`` (one reflection).
    """
    n3 = 3 * w
    p = 3 * r
    f = fbuf[:n3 + 2 * p]
    body = f[p:p + n3]
    for i in range(n3):
        body[i] = src[i]
    for t in range(1, r + 1):                  # pixel -t is pixel t; pixel w-1+t is pixel w-1-t
        for ch in range(3):
            f[p - 3 * t + ch] = body[3 * t + ch]
            f[p + n3 - 3 + 3 * t + ch] = body[n3 - 3 - 3 * t + ch]
    w0 = np.float32(taps[r])
    for i in range(n3):
        dst[i] = w0 * body[i]
    for t in range(1, r + 1):                  # the same order of operations as the GPU split's blur
        wt = np.float32(taps[r + t])
        a = f[p - 3 * t:p - 3 * t + n3]
        b = f[p + 3 * t:p + 3 * t + n3]
        for i in range(n3):
            dst[i] += wt * (a[i] + b[i])


@njit(cache=True, fastmath=EXACT_MATH)
def gaussian_blur(img, h, w, sigma, max_radius, taps, ring, vals, fbuf, solarize_threshold):
    """Blur ``img[:h, :3w]`` (uint8, channels folded into rows) in place.

    Args:
        max_radius: half the kernel size (torchvision pads by kernel_size // 2).
        taps: float64 scratch of ``2 * max_radius + 1``; ring: float32 scratch of
            ``(2 * max_radius + 1, 3 * w)``; vals: float32 scratch of ``3 * w``; fbuf: float32 scratch of
            ``scratch_floats(w, max_radius)`` (a row widened by its reflected borders).
        solarize_threshold: if in [0, 255], also solarize (``x >= t -> 255 - x``) while writing.
    """
    r = gaussian_taps(sigma, max_radius, taps)
    if h <= r or w <= r:                 # reflect padding needs more pixels than the radius
        r = min(r, min(h, w) - 1)
        if r < 1:
            return
        gaussian_taps(sigma, r, taps)
    n3 = 3 * w
    if fbuf.shape[0] < scratch_floats(w, r) or vals.shape[0] < n3 or ring.shape[0] < 2 * r + 1 or ring.shape[1] < n3:
        raise ValueError("gaussian_blur: scratch too small (fbuf needs scratch_floats(w, max_radius) floats, vals 3 * w, "
                         "ring (2 * max_radius + 1, 3 * w))")
    size = 2 * r + 1
    solar = 0.0 <= solarize_threshold <= 255.0
    thr = np.float32(solarize_threshold)
    acc = vals[:n3]
    # The ring holds the horizontally blurred rows y-r .. y+r (slot = row % size); row y is
    # overwritten only after rows up to y+r were read, so the in-place write is safe.
    for y in range(min(r, h)):
        _blur_row(img[y, :n3], ring[y % size, :n3], fbuf, w, taps, r)
    for y in range(h):
        if y + r < h:
            _blur_row(img[y + r, :n3], ring[(y + r) % size, :n3], fbuf, w, taps, r)
        src = ring[y % size, :n3]
        w0 = np.float32(taps[r])
        for i in range(n3):
            acc[i] = w0 * src[i]
        for t in range(1, r + 1):
            a = ring[_reflect(y - t, h) % size, :n3]
            b = ring[_reflect(y + t, h) % size, :n3]
            wt = np.float32(taps[r + t])
            for i in range(n3):
                acc[i] += wt * (a[i] + b[i])
        out = img[y, :n3]
        if solar:
            for i in range(n3):
                u = np.uint8(min(max(acc[i] + np.float32(0.5), np.float32(0.0)), np.float32(255.0)))
                out[i] = np.uint8(255) - u if np.float32(u) >= thr else u
        else:
            for i in range(n3):
                out[i] = np.uint8(min(max(acc[i] + np.float32(0.5), np.float32(0.0)), np.float32(255.0)))
