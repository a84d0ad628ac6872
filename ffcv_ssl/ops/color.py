"""Colour augmentations on uint8 views, with torchvision's tensor semantics (``transforms.v2.functional``).

Each op is one pass over a view that sits in L2 (224x224x3 = 147 KB); passes are simple element-wise
loops that numba vectorises, which beats one branchy fused pass. Semantics follow torchvision on
uint8 tensors exactly, including its truncation back to uint8 after every op:
- brightness: ``x * f``; contrast: blend with the mean of the floored luma; saturation: blend with
  the floored luma of each pixel; luma weights (0.2989, 0.587, 0.114);
- hue: RGB -> HSV, shift, HSV -> RGB in float32, back to uint8 as ``floor(x * 255.999)``;
- grayscale: truncated luma on all three channels; solarize: ``x >= t -> 255 - x``.
The colour-jitter order is a per-sample permutation (torchvision draws one per call).

Float semantics: ``EXACT_MATH`` is fastmath without contraction, reassociation or approximate
reciprocals, so every float32 operation rounds as IEEE arithmetic does. The GPU-split path
(``device_colour.py``) then reproduces these kernels bit for bit with plain torch ops; with full fastmath,
fused multiply-adds made ~1e-4 of the hue pixels differ by one level, which a later contrast or a
solarize threshold can amplify. The loops are element-wise, so they vectorise all the same.
"""

import numpy as np
from numba import njit

BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3
EXACT_MATH = {"nnan", "ninf", "nsz"}     # no contract / reassoc / arcp / afn: IEEE rounding of every op
_LR, _LG, _LB = np.float32(0.2989), np.float32(0.587), np.float32(0.114)
_ZERO, _TOP = np.float32(0.0), np.float32(255.0)


@njit(cache=True, fastmath=EXACT_MATH, inline="always")
def _clamp_trunc(x):
    return np.uint8(min(max(x, _ZERO), _TOP))


@njit(cache=True, fastmath=EXACT_MATH, inline="always")
def _floor_pos(x):
    """floor of a non-negative float32 as a truncating cast: math.floor becomes a call to numba's
    ``floorf`` helper per pixel, which blocks vectorisation (measured: 5% of the loader's time)."""
    return np.float32(np.int32(x))


@njit(cache=True, fastmath=EXACT_MATH)
def brightness(img, h, w, f):
    f = np.float32(f)
    for y in range(h):
        row = img[y, :3 * w]
        for i in range(3 * w):
            row[i] = _clamp_trunc(f * row[i])


@njit(cache=True, fastmath=EXACT_MATH)
def luma_mean(img, h, w):
    """Mean over the view of ``floor(luma)``: the grey level contrast blends towards."""
    total = 0.0
    for y in range(h):
        row = img[y, :3 * w]
        acc = np.int32(0)           # integer sum: exact, and it vectorises without reassociation
        for x in range(w):
            acc += np.int32(_LR * np.float32(row[3 * x]) + _LG * np.float32(row[3 * x + 1])
                            + _LB * np.float32(row[3 * x + 2]))
        total += acc
    return total / (h * w)


@njit(cache=True, fastmath=EXACT_MATH)
def contrast(img, h, w, f):
    mean = np.float32(luma_mean(img, h, w))
    f = np.float32(f)
    offset = (np.float32(1.0) - f) * mean
    for y in range(h):
        row = img[y, :3 * w]
        for i in range(3 * w):
            row[i] = _clamp_trunc(f * row[i] + offset)


@njit(cache=True, fastmath=EXACT_MATH)
def saturation(img, h, w, f):
    f = np.float32(f)
    g = np.float32(1.0) - f
    for y in range(h):
        row = img[y, :3 * w]
        for x in range(w):
            r0 = np.float32(row[3 * x])
            g0 = np.float32(row[3 * x + 1])
            b0 = np.float32(row[3 * x + 2])
            grey = g * _floor_pos(_LR * r0 + _LG * g0 + _LB * b0)
            row[3 * x] = _clamp_trunc(f * r0 + grey)
            row[3 * x + 1] = _clamp_trunc(f * g0 + grey)
            row[3 * x + 2] = _clamp_trunc(f * b0 + grey)


@njit(cache=True, fastmath=EXACT_MATH, inline="always")
def _mod6(k):
    """``k - 6 floor(k / 6)`` for ``k`` in [0, 12), bit for bit, without the division: the quotient is below 1
    exactly when ``k`` < 6 (float32 division is correctly rounded), so the floor is 0 or 1. Three divisions
    per pixel were ~12% of the hue kernel (measured, docs/loading.md §4)."""
    return k - np.float32(6.0) if k >= np.float32(6.0) else k


@njit(cache=True, fastmath=EXACT_MATH)
def hue(img, h, w, shift):
    """HSV hue rotation by ``shift`` turns (torchvision ``adjust_hue``, factor in [-0.5, 0.5]).

    Branch-free, so numba vectorises it (4.8x faster than the sector-by-sector form on real photos):
    the hue comes from selects, and RGB is rebuilt per channel as ``V - V S clamp(min(k, 4 - k), 0, 1)``
    with ``k = (n + 6 h) mod 6`` (n = 5, 3, 1), which equals torchvision's (v, p, q, t) sector table.
    A grey pixel (zero chroma) keeps its value, as in torchvision.
    """
    inv255 = np.float32(1.0 / 255.0)
    scale = np.float32(255.999)
    one = np.float32(1.0)
    six = np.float32(6.0)
    four = np.float32(4.0)
    shift = np.float32(shift)
    for y in range(h):
        row = img[y, :3 * w]
        for x in range(w):
            r = np.float32(row[3 * x]) * inv255
            g = np.float32(row[3 * x + 1]) * inv255
            b = np.float32(row[3 * x + 2]) * inv255
            maxc = max(r, max(g, b))
            chroma = maxc - min(r, min(g, b))
            inv = one / chroma if chroma > _ZERO else _ZERO
            sat = chroma / maxc if maxc > _ZERO else _ZERO
            rc = (maxc - r) * inv
            gc = (maxc - g) * inv
            bc = (maxc - b) * inv
            hh = (bc - gc) if maxc == r else ((np.float32(2.0) + rc - bc) if maxc == g else (four + gc - rc))
            hh = hh / six + one                   # in [5/6, 11/6): positive, so truncation is floor
            hh = hh - _floor_pos(hh)
            hh = hh + shift + one                 # shift in [-0.5, 0.5]: still positive
            hh = (hh - _floor_pos(hh)) * six
            vs = maxc * sat
            kr = _mod6(np.float32(5.0) + hh)      # hh in [0, 6): every k in [0, 12)
            kg = _mod6(np.float32(3.0) + hh)
            kb = _mod6(one + hh)
            row[3 * x] = np.uint8((maxc - vs * min(max(min(kr, four - kr), _ZERO), one)) * scale)
            row[3 * x + 1] = np.uint8((maxc - vs * min(max(min(kg, four - kg), _ZERO), one)) * scale)
            row[3 * x + 2] = np.uint8((maxc - vs * min(max(min(kb, four - kb), _ZERO), one)) * scale)


@njit(cache=True, fastmath=EXACT_MATH)
def grayscale(img, h, w):
    for y in range(h):
        row = img[y, :3 * w]
        for x in range(w):
            l = np.uint8(_LR * np.float32(row[3 * x]) + _LG * np.float32(row[3 * x + 1])
                         + _LB * np.float32(row[3 * x + 2]))
            row[3 * x] = l
            row[3 * x + 1] = l
            row[3 * x + 2] = l


@njit(cache=True, fastmath=EXACT_MATH)
def solarize(img, h, w, threshold):
    t = np.float32(threshold)
    for y in range(h):
        row = img[y, :3 * w]
        for i in range(3 * w):
            v = row[i]
            row[i] = np.uint8(255) - v if np.float32(v) >= t else v


@njit(cache=True)
def color_jitter(img, h, w, order, factors):
    """Apply brightness/contrast/saturation/hue in ``order`` (a permutation of 0..3) with ``factors``.

    A factor of exactly 1 (0 for hue) is skipped: torchvision's ops are the identity there.
    """
    for k in range(4):
        op = order[k]
        f = factors[op]
        if op == BRIGHTNESS and f != 1.0:
            brightness(img, h, w, f)
        elif op == CONTRAST and f != 1.0:
            contrast(img, h, w, f)
        elif op == SATURATION and f != 1.0:
            saturation(img, h, w, f)
        elif op == HUE and f != 0.0:
            hue(img, h, w, f)
