"""Per-view augmentation recipes in kernel form, the per-sample parameter draw, and the per-view kernel.

A recipe is a flat row of numbers per view (``VIEW_FLOATS``/``VIEW_INTS``); parameters of every
(sample, view) are drawn from the counter RNG keyed by (seed, epoch, sample id, view) *before* the
parallel loop, then each view is cropped+resized+flipped, colour-jittered, greyed, blurred and
solarized in place in the order torchvision's SimCLR/BYOL recipes apply them.
"""
import llvmlite.binding as llvm
import numpy as np
import numba
from numba import cfunc, njit, prange, types

from ._rng import derive_key, uniform
from .jpeg import imdecode
from .pointers import address_as_bytes, address_as_voidptr
from .blur import gaussian_blur, scratch_floats
from .color import color_jitter, grayscale, solarize
from .crops import center_crop, random_resized_crop
from .resize import resize_crop

# columns of the float recipe row
F_SCALE_LO, F_SCALE_HI, F_LOGR_LO, F_LOGR_HI, F_CENTER, F_FLIP_P, F_JITTER_P = 0, 1, 2, 3, 4, 5, 6
F_BRIGHT, F_CONTRAST, F_SAT, F_HUE, F_GRAY_P, F_BLUR_P, F_SIG_LO, F_SIG_HI = 7, 8, 9, 10, 11, 12, 13, 14
F_SOLAR_P, F_SOLAR_T = 15, 16
VIEW_FLOATS = 17
# columns of the int recipe row
I_OUT_H, I_OUT_W, I_CROP_MODE, I_BLUR_RADIUS = 0, 1, 2, 3
VIEW_INTS = 4
CROP_RANDOM, CROP_CENTER, CROP_FULL = 0, 1, 2

# columns of the drawn per-(sample, view) parameters
P_TOP, P_LEFT, P_CH, P_CW, P_FLIP, P_JITTER, P_ORDER, P_GRAY, P_BLUR = 0, 1, 2, 3, 4, 5, 6, 10, 11
PARAM_INTS = 12
Q_FACTORS, Q_SIGMA, Q_SOLAR = 0, 4, 5
PARAM_FLOATS = 6
# columns of the colour parameters handed to the device in GPU-split mode (float64, per sample and view;
# ``device_colour.py`` reads them): what ``render_views`` would apply after crop + resize + flip
C_JITTER, C_ORDER, C_FACTORS, C_GRAY, C_BLUR, C_SIGMA, C_SOLAR = 0, 1, 5, 9, 10, 11, 12
COLOUR_COLS = 13


@njit(cache=True)
def draw_params(sample_ids, heights, widths, seed, epoch, vf, vi, pint, pflt):
    """Fill ``pint[b, v]`` / ``pflt[b, v]`` for every sample of the batch and every view.

    Each (sample, view) uses its own stream ``key(seed, epoch, sample id, view)``: draws 0-41 are the
    crop, 50 flip, 51 jitter, 52-55 factors, 56-59 order, 60 grayscale, 61-62 blur, 63 solarize.
    """
    n_views = vf.shape[0]
    base = derive_key(seed, epoch)
    for b in range(len(sample_ids)):
        skey = derive_key(base, sample_ids[b])
        hgt = heights[b]
        wid = widths[b]
        for v in range(n_views):
            key = derive_key(skey, v)
            f = vf[v]
            mode = vi[v, I_CROP_MODE]
            if mode == CROP_RANDOM:
                top, left, ch, cw = random_resized_crop(hgt, wid, f[F_SCALE_LO], f[F_SCALE_HI],
                                                        f[F_LOGR_LO], f[F_LOGR_HI], key)
            elif mode == CROP_CENTER:
                top, left, ch, cw = center_crop(hgt, wid, f[F_CENTER])
            else:
                top, left, ch, cw = 0, 0, hgt, wid
            p = pint[b, v]
            q = pflt[b, v]
            p[P_TOP] = top
            p[P_LEFT] = left
            p[P_CH] = ch
            p[P_CW] = cw
            p[P_FLIP] = uniform(key, 50) < f[F_FLIP_P]
            jitter = uniform(key, 51) < f[F_JITTER_P]
            p[P_JITTER] = jitter
            # torchvision ColorJitter: factor ~ U(max(0, 1-s), 1+s) for b/c/s, U(-h, h) for hue
            for k in range(3):
                s = f[F_BRIGHT + k]
                q[Q_FACTORS + k] = max(0.0, 1.0 - s) + (1.0 + s - max(0.0, 1.0 - s)) * uniform(key, 52 + k)
            q[Q_FACTORS + 3] = f[F_HUE] * (2.0 * uniform(key, 55) - 1.0)
            for k in range(4):       # Fisher-Yates: a uniform random order of the four ops
                p[P_ORDER + k] = k
            for k in range(3, 0, -1):
                j = int(uniform(key, 56 + k) * (k + 1))
                tmp = p[P_ORDER + k]
                p[P_ORDER + k] = p[P_ORDER + j]
                p[P_ORDER + j] = tmp
            p[P_GRAY] = uniform(key, 60) < f[F_GRAY_P]
            p[P_BLUR] = uniform(key, 61) < f[F_BLUR_P]
            q[Q_SIGMA] = f[F_SIG_LO] + (f[F_SIG_HI] - f[F_SIG_LO]) * uniform(key, 62)
            q[Q_SOLAR] = f[F_SOLAR_T] if uniform(key, 63) < f[F_SOLAR_P] else -1.0


@njit(cache=True)
def colour_params(pint, pflt, vi, out):
    """Copy the colour part of the drawn parameters into ``out[b, v, :COLOUR_COLS]`` (GPU-split mode).

    The numbers are the very draws ``render_views`` applies in CPU-complete mode, so both modes agree
    sample by sample; blur is marked only where the view has a kernel (``I_BLUR_RADIUS`` > 0).
    """
    for b in range(pint.shape[0]):
        for v in range(pint.shape[1]):
            p = pint[b, v]
            q = pflt[b, v]
            o = out[b, v]
            o[C_JITTER] = p[P_JITTER]
            for k in range(4):
                o[C_ORDER + k] = p[P_ORDER + k]
                o[C_FACTORS + k] = q[Q_FACTORS + k]
            o[C_GRAY] = p[P_GRAY]
            o[C_BLUR] = 1.0 if p[P_BLUR] != 0 and vi[v, I_BLUR_RADIUS] > 0 else 0.0
            o[C_SIGMA] = q[Q_SIGMA]
            o[C_SOLAR] = q[Q_SOLAR]


@njit(cache=True)
def half_scale_allowed(pint, vi, height, width):
    """True when every crop of the sample is at least twice its output size (1/2 DCT decode is exact enough)."""
    if height < 2 or width < 2:
        return False
    for v in range(pint.shape[0]):
        if pint[v, P_CH] < 2 * vi[v, I_OUT_H] or pint[v, P_CW] < 2 * vi[v, I_OUT_W]:
            return False
    return True


@njit(cache=True)
def render_views(img, height, width, shrink, out, pint, pflt, vi, max_side, taps_cap, max_radius, host_colour=True):
    """Write every view of one decoded sample into ``out`` (V, Hmax, Wmax * 3) uint8.

    With ``host_colour`` False (GPU-split mode) it stops after crop + resize + flip: colour jitter,
    grayscale, blur and solarize then run on the consumer's device (``device_colour.py``).

    ``img`` is the decoded image (height, width * 3), decoded at 1/``shrink`` of the stored size
    (crops are in stored-size coordinates). Scratch is allocated here, per sample: with glibc's
    adaptive mmap threshold this costs microseconds, and it keeps the kernel free of shared state.
    """
    ys = np.empty(max_side, np.int64)
    yn = np.empty(max_side, np.int64)
    xs = np.empty(max_side, np.int64)
    xn = np.empty(max_side, np.int64)
    yw = np.empty((max_side, taps_cap), np.float32)
    xw = np.empty((max_side, taps_cap), np.float32)
    row = np.empty(4 * 3 * width + 4, np.float32)  # four rows at a time, + slack for the SIMD pass's 4-float loads
    acc = np.empty(4 * 3 * max_side, np.float32)
    taps = np.empty(2 * max_radius + 1, np.float64)
    ring = np.empty((2 * max_radius + 1, 3 * max_side), np.float32)
    vals = np.empty(3 * max_side, np.float32)
    fbuf = np.empty(scratch_floats(max_side, max_radius), np.float32)
    for v in range(pint.shape[0]):
        p = pint[v]
        q = pflt[v]
        oh = vi[v, I_OUT_H]
        ow = vi[v, I_OUT_W]
        top = p[P_TOP] / shrink               # fractional on a 1/2-scale decode: resize_crop keeps it exact
        left = p[P_LEFT] / shrink
        ch = max(1.0, min(p[P_CH] / shrink, height - top))
        cw = max(1.0, min(p[P_CW] / shrink, width - left))
        view = out[v]
        resize_crop(img, top, left, ch, cw, view, oh, ow, p[P_FLIP] != 0, ys, yn, yw, xs, xn, xw, row, acc)
        if not host_colour:
            continue
        if p[P_JITTER]:
            color_jitter(view, oh, ow, p[P_ORDER:P_ORDER + 4], q[Q_FACTORS:Q_FACTORS + 4])
        if p[P_GRAY]:
            grayscale(view, oh, ow)
        if p[P_BLUR] and vi[v, I_BLUR_RADIUS] > 0:
            gaussian_blur(view, oh, ow, q[Q_SIGMA], vi[v, I_BLUR_RADIUS], taps, ring, vals, fbuf, q[Q_SOLAR])
        elif q[Q_SOLAR] >= 0.0:
            solarize(view, oh, ow, q[Q_SOLAR])


@njit(cache=True)
def crop_union(pint, height, width):
    """(top, left, h, w) covering every crop of a sample, top/left aligned down to 16 px (JPEG MCUs)."""
    top = height
    left = width
    bottom = 0
    right = 0
    for v in range(pint.shape[0]):
        top = min(top, pint[v, P_TOP])
        left = min(left, pint[v, P_LEFT])
        bottom = max(bottom, pint[v, P_TOP] + pint[v, P_CH])
        right = max(right, pint[v, P_LEFT] + pint[v, P_CW])
    top = (top // 16) * 16
    left = (left // 16) * 16
    return top, left, min(bottom, height) - top, min(right, width) - left


@njit(cache=True, parallel=True)
def decode_batch(addresses, sizes, modes, heights, widths, out, pint, pflt, vi, half, max_side, taps_cap,
                 max_radius, roi_fraction, host_colour):
    """Decode every sample of a batch once (JPEG via libjpeg-turbo, or raw) and render all its views.

    One parallel loop over the samples; each decodes into its own buffer (1/2 DCT scale when every crop
    of the sample allows it) and writes its V views into ``out`` (B, V, Hmax, Wmax * 3). ``addresses`` and
    ``sizes`` locate the stored bytes (memory-mapped beton pages) of each sample. When the union of a
    sample's crops covers at most ``roi_fraction`` of the image, only that region is decoded (libjpeg-turbo's
    lossless crop, aligned to 16-px MCUs); 0 disables it.
    """
    for b in prange(len(addresses)):
        h = heights[b]
        w = widths[b]
        if modes[b] == 0:                                        # ffcv IMAGE_MODES['jpg']
            shrink = 2 if half and half_scale_allowed(pint[b], vi, h, w) else 1
            if shrink == 1 and roi_fraction > 0.0:
                y0, x0, rh, rw = crop_union(pint[b], h, w)
                if rh * rw <= roi_fraction * h * w:
                    img = np.empty((rh, rw * 3), np.uint8)
                    imdecode(address_as_voidptr(addresses[b]), np.uint64(sizes[b]), np.uint32(h), np.uint32(w),
                             img.ctypes.data, np.uint32(rh), np.uint32(rw), np.uint32(x0), np.uint32(y0),
                             np.uint32(1), np.uint32(1), True, False)
                    shifted = pint[b].copy()
                    for v in range(shifted.shape[0]):
                        shifted[v, P_TOP] -= y0
                        shifted[v, P_LEFT] -= x0
                    render_views(img, rh, rw, 1, out[b], shifted, pflt[b], vi, max_side, taps_cap, max_radius,
                                 host_colour)
                    continue
            hh = (h + shrink - 1) // shrink
            ww = (w + shrink - 1) // shrink
            img = np.empty((hh, ww * 3), np.uint8)
            imdecode(address_as_voidptr(addresses[b]), np.uint64(sizes[b]), np.uint32(h), np.uint32(w),
                     img.ctypes.data, np.uint32(h), np.uint32(w), np.uint32(0), np.uint32(0), np.uint32(1),
                     np.uint32(shrink), False, False)
            render_views(img, hh, ww, shrink, out[b], pint[b], pflt[b], vi, max_side, taps_cap, max_radius,
                         host_colour)
        else:
            img = numba.carray(address_as_bytes(addresses[b]), (h, w * 3))   # read in place, never written
            render_views(img, h, w, 1, out[b], pint[b], pflt[b], vi, max_side, taps_cap, max_radius, host_colour)


# ------------------------------------------------------------------ the batch kernel, called by address
# A jitted function that calls ``decode_batch`` links the kernel's LLVM IR into its own module and
# re-optimises it: 2.6-3.7 s of compile for every new loader, although ``decode_batch`` itself is cached
# (measured; it was most of a short evaluation job's start-up). ``render_batch_c`` is a cached C callback
# that draws the parameters and runs the kernel on arrays given by address; the loader's glue calls it as
# an external symbol (``render_batch``), so it links nothing and compiles in a fraction of a second.
_P = types.uint64          # an array's data address (``arr.ctypes.data``)
RENDER_BATCH_SIG = types.int64(
    _P, _P, _P, _P, _P, _P,                              # ids, heights, widths, modes (int64), addresses (uint64), sizes
    _P, _P, _P,                                          # vf (V x VIEW_FLOATS), vi (V x VIEW_INTS), out (uint8)
    types.int64, types.int64, types.int64, types.int64,  # n, views, out_h, out_w * 3
    types.uint64, types.int64,                           # seed, epoch
    types.int64, types.int64, types.int64, types.int64, types.float64,  # half, max_side, taps_cap, radius, roi
    types.int64)                                         # host_colour (0: GPU split, stop after crop+resize+flip)


@cfunc(RENDER_BATCH_SIG, cache=True)
def render_batch_c(p_ids, p_heights, p_widths, p_modes, p_addresses, p_sizes, p_vf, p_vi, p_out, n, n_views,
                   out_h, out_w3, seed, epoch, half, max_side, taps_cap, max_radius, roi_fraction, host_colour):
    ids = numba.carray(address_as_voidptr(p_ids), (n,), np.int64)
    heights = numba.carray(address_as_voidptr(p_heights), (n,), np.int64)
    widths = numba.carray(address_as_voidptr(p_widths), (n,), np.int64)
    modes = numba.carray(address_as_voidptr(p_modes), (n,), np.int64)
    addresses = numba.carray(address_as_voidptr(p_addresses), (n,), np.uint64)
    sizes = numba.carray(address_as_voidptr(p_sizes), (n,), np.int64)
    vf = numba.carray(address_as_voidptr(p_vf), (n_views, VIEW_FLOATS), np.float64)
    vi = numba.carray(address_as_voidptr(p_vi), (n_views, VIEW_INTS), np.int64)
    out = numba.carray(address_as_voidptr(p_out), (n, n_views, out_h, out_w3), np.uint8)
    pint = np.empty((n, n_views, PARAM_INTS), np.int64)
    pflt = np.empty((n, n_views, PARAM_FLOATS), np.float64)
    draw_params(ids, heights, widths, seed, epoch, vf, vi, pint, pflt)
    decode_batch(addresses, sizes, modes, heights, widths, out, pint, pflt, vi, half != 0, max_side, taps_cap,
                 max_radius, roi_fraction, host_colour != 0)
    return 0


_RENDER_SYMBOL = "ffcv_ssl_render_batch_v2"
llvm.add_symbol(_RENDER_SYMBOL, render_batch_c.address)
render_batch = types.ExternalFunction(_RENDER_SYMBOL, RENDER_BATCH_SIG)

# GPU-split mode: the colour parameters of a batch, drawn by the same ``draw_params`` (same keys, same
# counters) as the host kernel, for the device-side augmentation. Called by address like ``render_batch``.
COLOUR_BATCH_SIG = types.int64(
    _P, _P, _P, _P, _P, _P,                              # ids, heights, widths (int64), vf, vi, out (float64)
    types.int64, types.int64, types.uint64, types.int64)  # n, views, seed, epoch


@cfunc(COLOUR_BATCH_SIG, cache=True)
def colour_batch_c(p_ids, p_heights, p_widths, p_vf, p_vi, p_out, n, n_views, seed, epoch):
    ids = numba.carray(address_as_voidptr(p_ids), (n,), np.int64)
    heights = numba.carray(address_as_voidptr(p_heights), (n,), np.int64)
    widths = numba.carray(address_as_voidptr(p_widths), (n,), np.int64)
    vf = numba.carray(address_as_voidptr(p_vf), (n_views, VIEW_FLOATS), np.float64)
    vi = numba.carray(address_as_voidptr(p_vi), (n_views, VIEW_INTS), np.int64)
    out = numba.carray(address_as_voidptr(p_out), (n, n_views, COLOUR_COLS), np.float64)
    pint = np.empty((n, n_views, PARAM_INTS), np.int64)
    pflt = np.empty((n, n_views, PARAM_FLOATS), np.float64)
    draw_params(ids, heights, widths, seed, epoch, vf, vi, pint, pflt)
    colour_params(pint, pflt, vi, out)
    return 0


_COLOUR_SYMBOL = "ffcv_ssl_colour_batch"
llvm.add_symbol(_COLOUR_SYMBOL, colour_batch_c.address)
colour_batch = types.ExternalFunction(_COLOUR_SYMBOL, COLOUR_BATCH_SIG)
