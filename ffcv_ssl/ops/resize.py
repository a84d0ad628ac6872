"""Antialiased bilinear resize of a crop, PIL's filter (what torchvision's RandomResizedCrop uses), with flip.

ffcv resizes with OpenCV ``INTER_AREA`` (~40% of its per-image CPU time, measured on one core). This is
PIL's ``BILINEAR`` with antialiasing: a triangle filter whose support widens with the downscale
factor, taps clamped to the crop (torchvision crops, then resizes). Separable, vertical pass first:
each output row is a weighted sum of a few contiguous source rows (a vectorised loop over one
contiguous row), then a horizontal pass over that float32 row (four rows at a time), which stays in L1.
The horizontal pass runs in C with AVX2 + FMA where the CPU has them (``_hresize.c``: 1.6-2x faster than the
numba pass, which stays as the fallback and the reference).

Measured on this 2-core machine (relative, same process): ~4x faster than a textbook per-pixel
two-pass loop; the details that matter are zero-based slices in hot loops (numba's negative-index
wraparound otherwise blocks vectorisation), unsigned indices in the scalar horizontal pass (the same
reason), filtering four output rows per horizontal pass, and converting a whole row to uint8 at once.
"""
import ctypes
import importlib.util
import math

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import cfunc, njit, types, uint64

from .pointers import address_as_voidptr


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
    """``r[:w3] = sum_k w[k] * src[y0 + k, base:base + w3]``: contiguous rows, vectorised by LLVM.

    Up to three taps per sweep over ``r`` (then two): each extra sweep reloads and stores ``r``. The sum
    runs tap by tap from ``k = 0`` as in a one-tap-per-sweep loop, so the result is the same.
    """
    s0 = src[y0, base:base + w3]
    if n >= 3:
        w0, w1, w2 = w[0], w[1], w[2]
        s1 = src[y0 + 1, base:base + w3]
        s2 = src[y0 + 2, base:base + w3]
        for i in range(w3):
            r[i] = w0 * s0[i] + w1 * s1[i] + w2 * s2[i]
        k = 3
    elif n == 2:
        w0, w1 = w[0], w[1]
        s1 = src[y0 + 1, base:base + w3]
        for i in range(w3):
            r[i] = w0 * s0[i] + w1 * s1[i]
        k = 2
    else:
        w0 = w[0]
        for i in range(w3):
            r[i] = w0 * s0[i]
        k = 1
    while k + 1 < n:
        wa, wb = w[k], w[k + 1]
        sa = src[y0 + k, base:base + w3]
        sb = src[y0 + k + 1, base:base + w3]
        for i in range(w3):
            r[i] = r[i] + wa * sa[i] + wb * sb[i]
        k += 2
    if k < n:
        wa = w[k]
        sa = src[y0 + k, base:base + w3]
        for i in range(w3):
            r[i] += wa * sa[i]


@njit(cache=True, fastmath=True, inline="always")
def _horizontal_rows(r0, r1, r2, r3, a0, a1, a2, a3, xs, xn, xwf, kw, out_w, flip):
    """Filter four float32 rows along x at once: ``a*[3 * o + c] = 0.5 + sum_k w[o, k] * r*[3 * (xs[o] + k) + c]``.

    Scalar (3 interleaved channels, 2-5 taps per output pixel), so what costs is loads: one weight and
    one index computation serve 12 multiply-adds. Indices are unsigned so numba emits no negative-index
    wraparound per load. ``o`` is mirrored when ``flip``; the +0.5 rounds to nearest when truncating later.
    """
    one = uint64(1)
    two = uint64(2)
    three = uint64(3)
    for ox in range(out_w):
        n = uint64(xn[ox])
        j = uint64(3 * xs[ox])
        wi = uint64(ox * kw)
        c0 = c1 = c2 = e0 = e1 = e2 = g0 = g1 = g2 = h0 = h1 = h2 = np.float32(0.5)
        k = uint64(0)
        while k < n:
            wk = xwf[wi + k]
            c0 += wk * r0[j]
            c1 += wk * r0[j + one]
            c2 += wk * r0[j + two]
            e0 += wk * r1[j]
            e1 += wk * r1[j + one]
            e2 += wk * r1[j + two]
            g0 += wk * r2[j]
            g1 += wk * r2[j + one]
            g2 += wk * r2[j + two]
            h0 += wk * r3[j]
            h1 += wk * r3[j + one]
            h2 += wk * r3[j + two]
            j += three
            k += one
        o = uint64(3 * (out_w - 1 - ox) if flip else 3 * ox)
        a0[o] = c0
        a0[o + one] = c1
        a0[o + two] = c2
        a1[o] = e0
        a1[o + one] = e1
        a1[o + two] = e2
        a2[o] = g0
        a2[o + one] = g1
        a2[o + two] = g2
        a3[o] = h0
        a3[o + one] = h1
        a3[o + two] = h2


@njit(cache=True, fastmath=True, inline="always")
def _store_row(a, d, n3):
    """``d[:n3] = uint8(clip(a[:n3]))``, a whole row at once (vectorised)."""
    for i in range(n3):
        d[i] = np.uint8(min(max(a[i], np.float32(0.0)), np.float32(255.0)))


# ------------------------------------------------------------------ the SIMD horizontal pass (C, AVX2 + FMA)
# ``_hresize.c`` filters the four rows with 256-bit multiply-adds; numba calls it by address. Where the
# extension is missing or the CPU lacks AVX2/FMA, the same symbol points at a numba callback that runs
# ``_horizontal_rows`` and the uint8 store: ``resize_crop`` then takes its inline numba path anyway, but a
# compiled caller cached where the C pass was present still links and computes the same values.
_U = types.uint64
HRESIZE_SIG = types.int64(_U, _U, _U, _U, _U, _U, _U, _U,      # rows r0..r3 (float32), outputs d0..d3 (uint8)
                          _U, _U, _U,                          # xs, xn (int64), xw (float32, C order)
                          types.int64, types.int64, types.int64, types.int64)   # w3, kw, out_w, flip


@cfunc(HRESIZE_SIG, cache=True)
def _hresize_rows4_numba(p_r0, p_r1, p_r2, p_r3, p_d0, p_d1, p_d2, p_d3, p_xs, p_xn, p_xw, w3, kw, out_w, flip):
    n3 = 3 * out_w
    f32 = np.float32
    rows = [numba.carray(address_as_voidptr(p), (w3,), f32) for p in (p_r0, p_r1, p_r2, p_r3)]
    acc = np.empty((4, n3), f32)
    _horizontal_rows(rows[0], rows[1], rows[2], rows[3], acc[0], acc[1], acc[2], acc[3],
                     numba.carray(address_as_voidptr(p_xs), (out_w,), np.int64),
                     numba.carray(address_as_voidptr(p_xn), (out_w,), np.int64),
                     numba.carray(address_as_voidptr(p_xw), (out_w * kw,), f32), kw, out_w, flip != 0)
    for k, p in enumerate((p_d0, p_d1, p_d2, p_d3)):
        _store_row(acc[k], numba.carray(address_as_voidptr(p), (n3,), np.uint8), n3)
    return 0


def _load_simd():
    """(address, True) of the C kernel when it is built and this CPU has AVX2 + FMA, else (None, False)."""
    spec = importlib.util.find_spec(f"{__package__}._hresize")
    if spec is None or not spec.origin:
        return None, False
    lib = ctypes.CDLL(spec.origin)
    lib.ffcv_ssl_hresize_available.restype = ctypes.c_int64
    if not lib.ffcv_ssl_hresize_available():
        return None, False
    return ctypes.cast(lib.ffcv_ssl_hresize_rows4, ctypes.c_void_p).value, True


_SIMD_ADDRESS, SIMD_HORIZONTAL = _load_simd()
_HRESIZE_SYMBOL = "ffcv_ssl_hresize_rows4_u8"
llvm.add_symbol(_HRESIZE_SYMBOL, _SIMD_ADDRESS if SIMD_HORIZONTAL else _hresize_rows4_numba.address)
hresize_rows4 = types.ExternalFunction(_HRESIZE_SYMBOL, HRESIZE_SIG)


@njit(cache=True, fastmath=True)
def resize_crop(src, top, left, crop_h, crop_w, dst, out_h, out_w, flip, ys, yn, yw, xs, xn, xw, row, acc):
    """Resize ``src[top:top+crop_h, left:left+crop_w]`` into ``dst[:out_h, :out_w]``, mirrored if ``flip``.

    ``src`` and ``dst`` are uint8 images with the channels folded into the rows: (H, W * 3). The crop box
    may be fractional: a crop of the stored image mapped onto a 1/2-scale decode starts and ends on half
    pixels, and rounding it to whole pixels would shift the view by up to a stored pixel (measured: as
    low as 24 dB against PIL's resize of the exact crop). Taps stay inside the pixels the box touches.

    Output rows go in blocks of four: the four rows' vertical passes first, then one horizontal pass
    that filters them together, sharing each tap's weight load and index arithmetic (the horizontal pass
    is scalar and over half of the kernel's time). Measured, docs/loading.md §4: one row per pass 0.32 ms per
    224-px view, two rows 0.24, four rows (with the three-tap vertical sweeps) 0.17-0.18 against 0.19-0.20
    for two on the same machine (kernel alone). Scratch for only two rows still works: the block then
    holds two rows, each filtered twice (slower, same output). Every row's arithmetic is the one-row
    form's (outputs differ from it by at most 1 grey level, where contracted multiply-adds round
    differently) and stays within 1 grey level of PIL. A fixed-point port of Pillow's arithmetic was 2x
    slower under numba (docs/loading.md §4).

    Args:
        ys, yn, yw, xs, xn, xw: scratch for the vertical / horizontal coefficients (``filter_coeffs``):
            int64 starts and counts, float32 weights with at least ``max_taps`` columns (xw C-contiguous).
        row: float32 scratch of at least ``2 * (crop_w + 1) * 3`` values, ``4 * (crop_w + 1) * 3`` for
            the four-row pass, and one float more for the SIMD horizontal pass (its 4-float loads);
            acc: of at least ``2 * out_w * 3`` (``4 * out_w * 3``).
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
        raise ValueError("resize_crop: row needs 2 * 3 * crop width values, acc 2 * 3 * out_w (4 * 3: faster)")
    rows = 4 if row.shape[0] >= 4 * w3 and acc.shape[0] >= 4 * n3 else 2
    r0 = row[:w3]
    r1 = row[w3:2 * w3]
    a0 = acc[:n3]
    a1 = acc[n3:2 * n3]
    if rows == 4:
        r2 = row[2 * w3:3 * w3]
        r3 = row[3 * w3:4 * w3]
        a2 = acc[2 * n3:3 * n3]
        a3 = acc[3 * n3:4 * n3]
    else:                                       # a block of two: rows 2 and 3 are rows 0 and 1 again
        r2 = r0
        r3 = r1
        a2 = a0
        a3 = a1
    base = rx * 3
    kw = xw.shape[1]
    xwf = xw.ravel()
    # the SIMD pass reads 4 floats per pixel: one float of slack after the last row (render_views allocates
    # it); it also needs the blocks of four and contiguous int64 starts/counts. Without it (no AVX2/FMA, or
    # no extension) the inline numba pass runs, with the caller's scratch.
    simd = (SIMD_HORIZONTAL and rows == 4 and row.shape[0] > 4 * w3 and xs.strides[0] == 8 and xn.strides[0] == 8
            and dst.strides[1] == 1)
    last = out_h - 1
    for oy in range(0, out_h, rows):
        oy1 = min(oy + 1, last)                 # past the last row: the last row again, computed and written twice
        _vertical_row(src, ry + ys[oy], yn[oy], yw[oy], base, w3, r0)
        _vertical_row(src, ry + ys[oy1], yn[oy1], yw[oy1], base, w3, r1)
        oy2 = oy
        oy3 = oy1
        if rows == 4:
            oy2 = min(oy + 2, last)
            oy3 = min(oy + 3, last)
            _vertical_row(src, ry + ys[oy2], yn[oy2], yw[oy2], base, w3, r2)
            _vertical_row(src, ry + ys[oy3], yn[oy3], yw[oy3], base, w3, r3)
        if simd:                                # filtered and stored as uint8 in one pass
            hresize_rows4(r0.ctypes.data, r1.ctypes.data, r2.ctypes.data, r3.ctypes.data, dst[oy].ctypes.data,
                          dst[oy1].ctypes.data, dst[oy2].ctypes.data, dst[oy3].ctypes.data, xs.ctypes.data,
                          xn.ctypes.data, xwf.ctypes.data, w3, kw, out_w, 1 if flip else 0)
            continue
        _horizontal_rows(r0, r1, r2, r3, a0, a1, a2, a3, xs, xn, xwf, kw, out_w, flip)
        _store_row(a0, dst[oy, :n3], n3)
        _store_row(a1, dst[oy1, :n3], n3)
        _store_row(a2, dst[oy2, :n3], n3)
        _store_row(a3, dst[oy3, :n3], n3)
