"""Antialiased bilinear resize of a crop, PIL's filter (what torchvision's RandomResizedCrop uses), with flip.

ffcv resizes with OpenCV ``INTER_AREA`` (~40% of its per-image CPU time, measured on one core). This is
PIL's ``BILINEAR`` with antialiasing: a triangle filter whose support widens with the downscale
factor, taps clamped to the crop (torchvision crops, then resizes). Separable, vertical pass first:
each output row is a weighted sum of a few contiguous source rows (a vectorised loop over one
contiguous row), then a horizontal pass over that float32 row (two rows at a time), which stays in L1.

Measured on this 2-core machine (relative, same process): ~4x faster than a textbook per-pixel
two-pass loop; the details that matter are zero-based slices in hot loops (numba's negative-index
wraparound otherwise blocks vectorisation), unsigned indices in the scalar horizontal pass (the same
reason), filtering two output rows per horizontal pass, and converting a whole row to uint8 at once.
"""
import math

import numpy as np
from numba import njit, uint64


@njit(cache=True)
def filter_coeffs(in_size, out_size, starts, counts, weights, offset, extent):
    """PIL's ``precompute_coeffs`` for the bilinear filter, box ``[offset, offset + extent)``, zero taps trimmed.

    The box may be fractional (PIL's ``resize(box=...)``); taps stay inside the input ``[0, in_size)``.
    Fills ``starts[o]`` (first input tap), ``counts[o]`` and ``weights[o, :counts[o]]`` (float32,
    normalised) for every output position ``o``; returns the largest tap count.
    """
    scale = extent / out_size
    filterscale = max(scale, 1.0)
    support = filterscale            # bilinear: support 1, widened on downscale (antialiasing)
    inv = 1.0 / filterscale
    most = 0
    for o in range(out_size):
        center = offset + (o + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        total = 0.0
        first = -1
        last = -1
        for x in range(lo, hi):
            t = abs((x - center + 0.5) * inv)
            if t < 1.0:
                total += 1.0 - t
                if first < 0:
                    first = x
                last = x
        if first < 0:                # degenerate: nearest input
            first = min(max(int(center), 0), in_size - 1)
            last = first
            total = 0.0
        n = last - first + 1
        for k in range(n):
            t = abs((first + k - center + 0.5) * inv)
            w = 1.0 - t if t < 1.0 else 0.0
            weights[o, k] = np.float32(w / total) if total > 0.0 else np.float32(1.0)
        starts[o] = first
        counts[o] = n
        most = max(most, n)
    return most


def max_taps(max_in: int, min_out: int) -> int:
    """Upper bound on the taps of ``filter_coeffs`` for inputs up to ``max_in`` and outputs >= ``min_out``."""
    return 2 * (-(-max_in // max(min_out, 1))) + 3


@njit(cache=True, fastmath=True, inline="always")
def _vertical_row(src, y0, n, w, base, w3, r):
    """``r[:w3] = sum_k w[k] * src[y0 + k, base:base + w3]``: contiguous rows, vectorised by LLVM."""
    w0 = w[0]
    s = src[y0, base:base + w3]
    for i in range(w3):
        r[i] = w0 * s[i]
    for k in range(1, n):
        wk = w[k]
        s = src[y0 + k, base:base + w3]
        for i in range(w3):
            r[i] += wk * s[i]


@njit(cache=True, fastmath=True)
def resize_crop(src, top, left, crop_h, crop_w, dst, out_h, out_w, flip, ys, yn, yw, xs, xn, xw, row, acc):
    """Resize ``src[top:top+crop_h, left:left+crop_w]`` into ``dst[:out_h, :out_w]``, mirrored if ``flip``.

    ``src`` and ``dst`` are uint8 images with the channels folded into the rows: (H, W * 3). The crop box
    may be fractional: a crop of the stored image mapped onto a 1/2-scale decode starts and ends on half
    pixels, and rounding it to whole pixels would shift the view by up to a stored pixel (measured: as
    low as 24 dB against PIL's resize of the exact crop). Taps stay inside the pixels the box touches.

    Output rows go in pairs: both rows' vertical passes first, then one horizontal pass that filters the
    two rows together, sharing each tap's weight and index (the horizontal pass is scalar: 3 interleaved
    channels, 2-5 taps per output pixel; it is ~3/4 of the kernel's time). Its indices are unsigned so
    numba emits no negative-index wraparound per load. Measured, docs/loading.md §4: 0.32 -> 0.24 ms per
    224-px view (kernel alone). The arithmetic is the one-row form's (outputs differ from it by at most
    1 grey level, where contracted multiply-adds round differently) and stays within 1 grey level of PIL.
    A fixed-point port of Pillow's arithmetic was 2x slower under numba (docs/loading.md §4).

    Args:
        ys, yn, yw, xs, xn, xw: scratch for the vertical / horizontal coefficients (``filter_coeffs``):
            int64 starts and counts, float32 weights with at least ``max_taps`` columns (xw C-contiguous).
        row: float32 scratch of at least ``2 * (crop_w + 1) * 3`` values; acc: of at least ``2 * out_w * 3``.
    """
    ry = int(math.floor(top))                   # the whole pixels the box touches
    rx = int(math.floor(left))
    rh = min(int(math.ceil(top + crop_h)), src.shape[0]) - ry
    rw = min(int(math.ceil(left + crop_w)), src.shape[1] // 3) - rx
    filter_coeffs(rh, out_h, ys, yn, yw, top - ry, crop_h)
    filter_coeffs(rw, out_w, xs, xn, xw, left - rx, crop_w)
    w3 = rw * 3
    n3 = out_w * 3
    if row.shape[0] < 2 * w3 or acc.shape[0] < 2 * n3:
        raise ValueError("resize_crop: row needs 2 * 3 * crop width values, acc 2 * 3 * out_w")
    r0 = row[:w3]
    r1 = row[w3:2 * w3]
    a0 = acc[:n3]
    a1 = acc[n3:2 * n3]
    base = rx * 3
    kw = xw.shape[1]
    xwf = xw.ravel()
    one = uint64(1)
    two = uint64(2)
    three = uint64(3)
    for oy in range(0, out_h, 2):
        oy1 = min(oy + 1, out_h - 1)             # an odd last row is computed twice, written once
        _vertical_row(src, ry + ys[oy], yn[oy], yw[oy], base, w3, r0)
        _vertical_row(src, ry + ys[oy1], yn[oy1], yw[oy1], base, w3, r1)
        for ox in range(out_w):
            n = uint64(xn[ox])
            j = uint64(3 * xs[ox])
            wi = uint64(ox * kw)
            c0 = np.float32(0.5)     # +0.5: round to nearest when truncating below
            c1 = np.float32(0.5)
            c2 = np.float32(0.5)
            e0 = np.float32(0.5)
            e1 = np.float32(0.5)
            e2 = np.float32(0.5)
            k = uint64(0)
            while k < n:
                wk = xwf[wi + k]
                c0 += wk * r0[j]
                c1 += wk * r0[j + one]
                c2 += wk * r0[j + two]
                e0 += wk * r1[j]
                e1 += wk * r1[j + one]
                e2 += wk * r1[j + two]
                j += three
                k += one
            o = uint64(3 * (out_w - 1 - ox) if flip else 3 * ox)
            a0[o] = c0
            a0[o + one] = c1
            a0[o + two] = c2
            a1[o] = e0
            a1[o + one] = e1
            a1[o + two] = e2
        d = dst[oy, :n3]
        for i in range(n3):
            d[i] = np.uint8(min(max(a0[i], np.float32(0.0)), np.float32(255.0)))
        d = dst[oy1, :n3]
        for i in range(n3):
            d[i] = np.uint8(min(max(a1[i], np.float32(0.0)), np.float32(255.0)))
