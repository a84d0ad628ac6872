"""The numba kernels of ``ffcv_ssl.ops`` against outside references, on real photographs.

- every pixel op, for fixed parameters, is within 2 grey levels (max abs) of
  ``torchvision.transforms.v2.functional`` on uint8 tensors (parametrised over the ``OPS`` registry);
- the crop sampler's scale / log-aspect / position distributions and its fallback frequency match
  ``torchvision.transforms.RandomResizedCrop.get_params`` (two-sample KS tests);
- the resize of a crop matches PIL's antialiased bilinear resize of the same crop at >= 35 dB, flips
  included;
- ``render_views`` (the per-view kernel) applies the drawn parameters as the torchvision recipe would.

The kernels are pure functions on (H, W*3) uint8 arrays, so no Loader is needed here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF
from PIL import Image
from scipy.stats import ks_2samp

from ffcv_ssl.ops import color
from ffcv_ssl.ops._rng import derive_key
from ffcv_ssl.ops.blur import gaussian_blur, gaussian_taps, kernel_size_for, scratch_floats
from ffcv_ssl.ops.crops import random_resized_crop
from ffcv_ssl.ops.decoder import recipes_to_arrays
from ffcv_ssl.ops.recipe import ViewConfig
from ffcv_ssl.ops.resize import max_taps, resize_crop
from ffcv_ssl.ops.views import (P_BLUR, P_CH, P_CW, P_FLIP, P_GRAY, P_JITTER, P_LEFT, P_ORDER, P_TOP, PARAM_FLOATS,
                                PARAM_INTS, Q_FACTORS, Q_SIGMA, Q_SOLAR, draw_params, render_views)


# --------------------------------------------------------------------------------------------------------------
# real photographs
# --------------------------------------------------------------------------------------------------------------

def _photos() -> Dict[str, np.ndarray]:
    import skimage.data
    from sklearn.datasets import load_sample_image

    out = {n: getattr(skimage.data, n)() for n in ("astronaut", "chelsea", "coffee", "rocket")}
    out.update({n: load_sample_image(f"{n}.jpg") for n in ("china", "flower")})
    return {k: np.ascontiguousarray(v[..., :3]) for k, v in out.items()}


PHOTOS = _photos()
# (height, width): square, landscape, portrait, odd sizes
SIZES = [(96, 96), (75, 131), (120, 67)]


def _resized(name: str, size: Tuple[int, int]) -> np.ndarray:
    h, w = size
    return np.asarray(Image.fromarray(PHOTOS[name]).resize((w, h), Image.BILINEAR))


CASES = [(n, s) for n in PHOTOS for s in SIZES]
CASE_IDS = [f"{n}-{s[0]}x{s[1]}" for n, s in CASES]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) uint8, what torchvision's tensor ops take."""
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()


def from_tensor(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).contiguous().numpy()


def folded(img: np.ndarray) -> np.ndarray:
    """A writable (H, W*3) copy: the layout the kernels take."""
    h, w, _ = img.shape
    return np.ascontiguousarray(img).reshape(h, w * 3).copy()


def unfolded(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    return arr[:h, :w * 3].reshape(h, w, 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


# --------------------------------------------------------------------------------------------------------------
# the op registry: our kernel vs torchvision's functional, for fixed parameters
# --------------------------------------------------------------------------------------------------------------

def blur_ours(img: np.ndarray, kernel: int, sigma: float, solarize_threshold: float = -1.0) -> np.ndarray:
    h, w, _ = img.shape
    r = kernel // 2
    arr = folded(img)
    gaussian_blur(arr, h, w, sigma, r, np.empty(2 * r + 1), np.empty((2 * r + 1, 3 * w), np.float32),
                  np.empty(3 * w, np.float32), np.empty(3 * (w + 2 * r), np.float32), solarize_threshold)
    return unfolded(arr, h, w)


def blur_reference(t: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    """torchvision's blur; an image smaller than the kernel gets the largest kernel torch's reflect pad allows.

    torchvision itself refuses such images (reflect padding must be smaller than the side); our kernel
    clamps the radius to ``min(h, w) - 1`` on both axes, so the reference is torchvision at that kernel.
    """
    _, h, w = t.shape
    k = 2 * min(kernel // 2, min(h, w) - 1) + 1
    return TF.gaussian_blur(t, [k, k], [sigma, sigma])


def flip_ours(img: np.ndarray) -> np.ndarray:
    """Flip through the resize kernel (same size in and out: the filter is the identity)."""
    h, w, _ = img.shape
    return unfolded(_resize(folded(img), 0, 0, h, w, h, w, True), h, w)


def jitter_ours(img: np.ndarray, order, factors) -> np.ndarray:
    h, w, _ = img.shape
    arr = folded(img)
    color.color_jitter(arr, h, w, np.asarray(order, np.int64), np.asarray(factors, np.float64))
    return unfolded(arr, h, w)


_TV_JITTER = {color.BRIGHTNESS: TF.adjust_brightness, color.CONTRAST: TF.adjust_contrast,
              color.SATURATION: TF.adjust_saturation, color.HUE: TF.adjust_hue}


def jitter_reference(t: torch.Tensor, order, factors) -> torch.Tensor:
    """torchvision ``ColorJitter.forward`` with its permutation and factors fixed."""
    for op in order:
        t = _TV_JITTER[op](t, factors[op])
    return t


def _inplace(kernel: Callable, *args) -> Callable[[np.ndarray], np.ndarray]:
    def run(img: np.ndarray) -> np.ndarray:
        h, w, _ = img.shape
        arr = folded(img)
        kernel(arr, h, w, *args)
        return unfolded(arr, h, w)
    return run


@dataclass(frozen=True)
class OpCase:
    name: str
    ours: Callable[[np.ndarray], np.ndarray]
    reference: Callable[[torch.Tensor], torch.Tensor]
    changes_photos: bool = True     # False for parameters at which torchvision itself is (almost) the identity


def _registry() -> List[OpCase]:
    ops: List[OpCase] = []
    for f in (0.25, 0.7, 1.35, 1.8):
        ops.append(OpCase(f"brightness{f}", _inplace(color.brightness, f), lambda t, f=f: TF.adjust_brightness(t, f)))
    for f in (0.2, 0.6, 1.4, 1.8):
        ops.append(OpCase(f"contrast{f}", _inplace(color.contrast, f), lambda t, f=f: TF.adjust_contrast(t, f)))
    for f in (0.0, 0.45, 1.3, 1.8):
        ops.append(OpCase(f"saturation{f}", _inplace(color.saturation, f),
                          lambda t, f=f: TF.adjust_saturation(t, f)))
    for f in (-0.5, -0.31, -0.05, 0.12, 0.2, 0.44, 0.5):
        ops.append(OpCase(f"hue{f}", _inplace(color.hue, f), lambda t, f=f: TF.adjust_hue(t, f)))
    ops.append(OpCase("grayscale", _inplace(color.grayscale), lambda t: TF.rgb_to_grayscale(t, 3)))
    for thr in (0.0, 64.0, 128.0, 200.5, 255.0):
        ops.append(OpCase(f"solarize{thr}", _inplace(color.solarize, thr), lambda t, thr=thr: TF.solarize(t, thr),
                          changes_photos=thr < 255))
    for k, s in ((23, 0.1), (23, 0.6), (23, 1.3), (23, 2.0), (9, 1.7), (5, 0.9), (3, 2.0), (13, 5.0)):
        ops.append(OpCase(f"blur{k}-{s}", lambda img, k=k, s=s: blur_ours(img, k, s),
                          lambda t, k=k, s=s: blur_reference(t, k, s), changes_photos=s > 0.2))
    ops.append(OpCase("blur23-1.1+solarize128", lambda img: blur_ours(img, 23, 1.1, 128.0),
                      lambda t: TF.solarize(blur_reference(t, 23, 1.1), 128.0)))
    ops.append(OpCase("hflip", flip_ours, TF.horizontal_flip))
    for order, factors in (((0, 1, 2, 3), (1.5, 0.6, 1.7, 0.17)), ((3, 2, 1, 0), (0.4, 1.7, 0.3, -0.2)),
                           ((1, 3, 0, 2), (1.2, 1.3, 0.2, 0.5))):
        ops.append(OpCase(f"jitter{''.join(map(str, order))}", lambda img, o=order, f=factors: jitter_ours(img, o, f),
                          lambda t, o=order, f=factors: jitter_reference(t, o, f)))
    return ops


OPS = _registry()


@pytest.mark.parametrize("op", OPS, ids=[o.name for o in OPS])
def test_op_matches_torchvision_on_photographs(op: OpCase):
    for name, size in CASES:
        img = _resized(name, size)
        ours = op.ours(img)
        ref = from_tensor(op.reference(to_tensor(img)))
        assert ours.shape == ref.shape and ours.dtype == np.uint8
        diff = int(np.abs(ours.astype(np.int16) - ref.astype(np.int16)).max())
        assert diff <= 2, f"{op.name} on {name} {size}: max abs diff {diff} grey levels vs torchvision"
    if op.changes_photos:
        img = _resized("coffee", SIZES[1])
        assert not np.array_equal(op.ours(img), img), f"{op.name} is the identity on a photograph: proves nothing"


@pytest.mark.parametrize("size", [(4, 4), (7, 30), (30, 7), (11, 11), (2, 50), (23, 23)], ids=str)
@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_blur_on_images_smaller_than_the_kernel(size, sigma):
    img = _resized("astronaut", size)
    ours = blur_ours(img, 23, sigma)
    ref = from_tensor(blur_reference(to_tensor(img), 23, sigma))
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 2


def test_blur_full_size_kernel_23_on_a_224_photo():
    """SimCLR's setting proper: 224 px, kernel 23 (10% of the side), sigma at the top of U(0.1, 2)."""
    assert kernel_size_for(224) == 23
    img = _resized("chelsea", (224, 224))
    for sigma in (0.35, 1.0, 2.0):
        ours = blur_ours(img, 23, sigma)
        ref = from_tensor(TF.gaussian_blur(to_tensor(img), [23, 23], [sigma, sigma]))
        assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 2
        assert sigma < 1 or psnr(ours, img) < 40          # it did blur


def blur_formula(img: np.ndarray, kernel: int, sigma: float, solarize_threshold: float = -1.0) -> np.ndarray:
    """The blur's arithmetic written out in NumPy float32 (IEEE, no fused multiply-adds): reflect borders,
    ``acc = w0 * c``, then ``acc = acc + w_t * (a_t + b_t)`` for t = 1..r, rows then columns, round half up.
    The kernel promises this order (the GPU split's blur reproduces it), so it must match bit for bit."""
    h, w, _ = img.shape
    taps = np.empty(2 * (kernel // 2) + 1)
    r = int(gaussian_taps(sigma, kernel // 2, taps))
    if h <= r or w <= r:
        r = min(r, min(h, w) - 1)
        if r < 1:
            return img.copy()
        gaussian_taps(sigma, r, taps)
    wt = [np.float32(taps[r + t]) for t in range(r + 1)]

    def one_axis(x: np.ndarray, axis: int) -> np.ndarray:
        n = x.shape[axis]
        pad = [(0, 0)] * x.ndim
        pad[axis] = (r, r)
        p = np.pad(x, pad, mode="reflect")
        take = lambda s: np.take(p, np.arange(s, s + n), axis=axis)
        acc = wt[0] * take(r)
        for t in range(1, r + 1):
            acc = acc + wt[t] * (take(r - t) + take(r + t))
        return acc

    acc = one_axis(one_axis(img.astype(np.float32), 1), 0)
    out = np.clip(acc + np.float32(0.5), np.float32(0.0), np.float32(255.0)).astype(np.uint8)
    if 0.0 <= solarize_threshold <= 255.0:
        out = np.where(out.astype(np.float32) >= np.float32(solarize_threshold), 255 - out, out).astype(np.uint8)
    return out


@pytest.mark.parametrize("size", [(224, 224), (40, 96), (96, 40), (13, 7), (3, 9), (2, 2)])
def test_blur_equals_its_float32_formula_bit_for_bit(size):
    img = _resized("coffee", size)
    for sigma, thr in ((0.1, -1.0), (0.3, -1.0), (1.05, 128.0), (2.0, -1.0), (3.5, 0.0)):
        assert np.array_equal(blur_ours(img, 23, sigma, thr), blur_formula(img, 23, sigma, thr)), (sigma, thr)


def test_blur_refuses_scratch_smaller_than_the_widened_row():
    """The widened row needs ``scratch_floats(w, r)`` floats; a row-sized scratch (the old contract) is refused,
    not written past its end."""
    h, w, r = 32, 40, 5
    arr = folded(_resized("coffee", (h, w)))
    scratch = (np.empty(2 * r + 1), np.empty((2 * r + 1, 3 * w), np.float32), np.empty(3 * w, np.float32))
    with pytest.raises(ValueError, match="scratch too small"):
        gaussian_blur(arr, h, w, 2.0, r, *scratch, np.empty(3 * w, np.float32), -1.0)
    gaussian_blur(arr, h, w, 2.0, r, *scratch, np.empty(scratch_floats(w, r), np.float32), -1.0)


def hue_formula(rgb: np.ndarray, shift: float) -> np.ndarray:
    """``color.hue``'s arithmetic in NumPy float32 with the modulo written as torchvision writes it,
    ``k - 6 floor(k / 6)``: the kernel replaces that division by a compare, which must change no pixel."""
    f32 = np.float32
    one, six, four, zero = f32(1), f32(6), f32(4), f32(0)
    r, g, b = (rgb[:, c].astype(f32) * f32(1.0 / 255.0) for c in range(3))
    maxc = np.maximum(r, np.maximum(g, b))
    chroma = maxc - np.minimum(r, np.minimum(g, b))
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(chroma > zero, one / chroma, zero).astype(f32)
        sat = np.where(maxc > zero, chroma / maxc, zero).astype(f32)
    rc, gc, bc = (maxc - r) * inv, (maxc - g) * inv, (maxc - b) * inv
    hh = np.where(maxc == r, bc - gc, np.where(maxc == g, (f32(2) + rc) - bc, (four + gc) - rc)).astype(f32)
    hh = hh / six + one
    hh = hh - np.trunc(hh)
    hh = (hh + f32(shift)) + one
    hh = (hh - np.trunc(hh)) * six
    vs = maxc * sat
    out = np.empty_like(rgb)
    for c, n in enumerate((5, 3, 1)):
        k = f32(n) + hh
        k = k - six * np.trunc(k / six)
        out[:, c] = ((maxc - vs * np.minimum(np.maximum(np.minimum(k, four - k), zero), one)) * f32(255.999)).astype(np.uint8)
    return out


def test_hue_equals_its_floor_division_formula_on_every_colour():
    """All 2^24 RGB colours, shifts across [-0.5, 0.5]: the kernel's division-free modulo is exact."""
    codes = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=1).astype(np.uint8)
    for shift in (-0.5, -0.2371, 0.0013, 0.5):
        for part in np.array_split(np.arange(len(rgb)), 4):
            chunk = rgb[part]
            got = chunk.reshape(1, -1).copy()
            color.hue(got, 1, len(chunk), shift)
            assert np.array_equal(got.reshape(-1, 3), hue_formula(chunk, shift)), shift


# --------------------------------------------------------------------------------------------------------------
# the crop sampler vs torchvision's RandomResizedCrop.get_params
# --------------------------------------------------------------------------------------------------------------

N_DRAWS = 3000
DEFAULT = ((0.08, 1.0), (3 / 4, 4 / 3))
CROP_SHAPES = [((375, 500), DEFAULT), ((500, 375), DEFAULT), ((224, 224), DEFAULT),
               ((100, 700), DEFAULT), ((700, 100), DEFAULT), ((40, 600), DEFAULT),
               ((300, 400), ((0.25, 0.9), (0.5, 2.0)))]


def _fallback(height: int, width: int, ratio) -> Tuple[int, int, int, int]:
    """torchvision's central-crop fallback, written out from its source."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _crop_stats(crops: np.ndarray, height: int, width: int, ratio) -> Dict[str, np.ndarray]:
    i, j, h, w = crops.T
    fb = np.all(crops == np.array(_fallback(height, width, ratio)), axis=1)
    return {"scale": h * w / (height * width), "log_ratio": np.log(w / h), "fallback": fb,
            "top": (i[~fb] + 0.5) / (height - h[~fb] + 1), "left": (j[~fb] + 0.5) / (width - w[~fb] + 1)}


@pytest.mark.parametrize("shape,params", CROP_SHAPES, ids=[f"{s[0]}x{s[1]}-{p[0]}" for s, p in CROP_SHAPES])
def test_crop_sampler_distribution_matches_torchvision(shape, params):
    height, width = shape
    scale, ratio = params
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    ours = np.array([random_resized_crop(height, width, scale[0], scale[1], log_lo, log_hi,
                                         np.uint64(derive_key(np.uint64(12345), np.uint64(k))))
                     for k in range(N_DRAWS)], np.int64)
    torch.manual_seed(0)
    dummy = torch.empty(1, height, width, dtype=torch.uint8)
    ref = np.array([T.RandomResizedCrop.get_params(dummy, list(scale), list(ratio)) for _ in range(N_DRAWS)],
                   np.int64)
    for crops in (ours, ref):
        i, j, h, w = crops.T
        assert np.all((i >= 0) & (j >= 0) & (h >= 1) & (w >= 1) & (i + h <= height) & (j + w <= width))
    a, b = _crop_stats(ours, height, width, ratio), _crop_stats(ref, height, width, ratio)
    # fallback frequency: two-proportion z-test at ~4 sigma
    pa, pb = a["fallback"].mean(), b["fallback"].mean()
    pooled = (pa + pb) / 2
    sd = math.sqrt(max(pooled * (1 - pooled), 1e-12) * 2 / N_DRAWS)
    assert abs(pa - pb) <= 4 * sd + 1e-9, f"fallback frequency {pa:.3f} vs torchvision {pb:.3f}"
    for key in ("scale", "log_ratio", "top", "left"):
        if min(len(a[key]), len(b[key])) < 50:
            continue                         # (almost) always the deterministic fallback
        res = ks_2samp(a[key], b[key], method="asymp")
        assert res.pvalue > 1e-3, f"{key}: KS statistic {res.statistic:.3f}, p={res.pvalue:.2g} vs torchvision"
    if shape in ((375, 500), (300, 400)):  # real random crops: aspect ratios are not all square (FFCV-SSL's bug)
        assert np.std(a["log_ratio"]) > 0.1


def test_crop_sampler_is_a_pure_function_of_its_key():
    args = (375, 500, 0.08, 1.0, math.log(3 / 4), math.log(4 / 3))
    k1, k2 = (np.uint64(derive_key(np.uint64(1), np.uint64(k))) for k in (7, 8))
    assert random_resized_crop(*args, k1) == random_resized_crop(*args, k1)
    assert random_resized_crop(*args, k1) != random_resized_crop(*args, k2)


# --------------------------------------------------------------------------------------------------------------
# the resize vs PIL's antialiased bilinear resize of the same crop
# --------------------------------------------------------------------------------------------------------------

def _resize(src: np.ndarray, top: float, left: float, ch: float, cw: float, out_h: int, out_w: int,
            flip: bool) -> np.ndarray:
    side = max(out_h, out_w)
    taps = max_taps(max(src.shape[0], src.shape[1] // 3), min(out_h, out_w))
    dst = np.zeros((out_h, out_w * 3), np.uint8)
    resize_crop(src, top, left, ch, cw, dst, out_h, out_w, flip,
                np.empty(side, np.int64), np.empty(side, np.int64), np.empty((side, taps), np.float32),
                np.empty(side, np.int64), np.empty(side, np.int64), np.empty((side, taps), np.float32),
                np.empty(2 * src.shape[1], np.float32), np.empty(2 * 3 * side, np.float32))
    return dst


def pil_resized_crop(img: np.ndarray, top: int, left: int, ch: int, cw: int, out_h: int, out_w: int) -> np.ndarray:
    """What torchvision's RandomResizedCrop does to a PIL image: crop, then BILINEAR (antialiased) resize."""
    crop = Image.fromarray(img).crop((left, top, left + cw, top + ch))
    return np.asarray(crop.resize((out_w, out_h), Image.BILINEAR))


def test_resize_matches_pil_on_many_random_crops():
    rng = np.random.default_rng(0)
    scores, worst_abs = [], 0
    upscales = downscales = 0
    for name, img in PHOTOS.items():
        src = folded(img)
        H, W, _ = img.shape
        for _ in range(12):
            ch, cw = int(rng.integers(5, H + 1)), int(rng.integers(5, W + 1))
            top, left = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
            out_h, out_w = int(rng.integers(8, 260)), int(rng.integers(8, 260))
            upscales += out_h > ch or out_w > cw
            downscales += out_h < ch or out_w < cw
            ours = unfolded(_resize(src, top, left, ch, cw, out_h, out_w, False), out_h, out_w)
            ref = pil_resized_crop(img, top, left, ch, cw, out_h, out_w)
            scores.append(psnr(ours, ref))
            worst_abs = max(worst_abs, int(np.abs(ours.astype(int) - ref.astype(int)).max()))
            assert scores[-1] >= 35.0, f"{name} crop {(top, left, ch, cw)} -> {(out_h, out_w)}: {scores[-1]:.1f} dB"
    assert upscales >= 10 and downscales >= 10
    assert np.median(scores) >= 45.0, f"median PSNR vs PIL {np.median(scores):.1f} dB"
    assert worst_abs <= 1, f"worst difference from PIL: {worst_abs} grey levels"


DEGENERATE = [((5, 5, 1, 1), (17, 23)), ((0, 0, 1, 451), (8, 200)), ((0, 0, 300, 1), (224, 3)),
              ((0, 0, 300, 451), (1, 1)), ((3, 4, 2, 3), (224, 224)), ((0, 0, 300, 451), (2, 300))]


@pytest.mark.parametrize("crop,out", DEGENERATE, ids=str)
def test_resize_degenerate_crops_and_outputs(crop, out):
    img = PHOTOS["chelsea"]
    ours = unfolded(_resize(folded(img), *crop, *out, False), *out)
    ref = pil_resized_crop(img, *crop, *out)
    assert psnr(ours, ref) >= 35.0 and np.abs(ours.astype(int) - ref.astype(int)).max() <= 2


def test_resize_of_a_fractional_box_matches_pil_box_resize():
    """Half-pixel boxes (a stored crop mapped onto a 1/2-scale decode) against PIL's ``resize(box=...)``.

    PIL lets taps reach outside the box into the whole image; ours keeps them inside the pixels the box
    touches, so the reference crops PIL's image to those pixels first.
    """
    rng = np.random.default_rng(1)
    for name, img in PHOTOS.items():
        src = folded(img)
        H, W, _ = img.shape
        for _ in range(8):
            ch, cw = rng.integers(20, H) / 2, rng.integers(20, W) / 2
            top, left = rng.integers(0, 2 * (H - ch)) / 2, rng.integers(0, 2 * (W - cw)) / 2
            out_h, out_w = int(rng.integers(8, 120)), int(rng.integers(8, 120))
            ours = unfolded(_resize(src, top, left, ch, cw, out_h, out_w, False), out_h, out_w)
            ry, rx = math.floor(top), math.floor(left)
            region = Image.fromarray(img).crop((rx, ry, math.ceil(left + cw), math.ceil(top + ch)))
            ref = np.asarray(region.resize((out_w, out_h), Image.BILINEAR,
                                           box=(left - rx, top - ry, left - rx + cw, top - ry + ch)))
            assert psnr(ours, ref) >= 40.0, (name, top, left, ch, cw, out_h, out_w)
            # and a whole-pixel rounding of the box would be measurably worse somewhere
    shifted = unfolded(_resize(folded(PHOTOS["coffee"]), 10.5, 20.5, 101.0, 151.0, 64, 64, False), 64, 64)
    rounded = unfolded(_resize(folded(PHOTOS["coffee"]), 10, 20, 101, 151, 64, 64, False), 64, 64)
    assert not np.array_equal(shifted, rounded)


def test_resize_refuses_scratch_too_small_for_two_rows():
    """The kernel filters output rows in pairs; one row's worth of scratch (the old size) must raise, not
    write past the buffers (numba does not bounds-check)."""
    src = folded(PHOTOS["chelsea"])
    side, taps = 224, max_taps(451, 224)
    coeffs = lambda: (np.empty(side, np.int64), np.empty(side, np.int64), np.empty((side, taps), np.float32))
    with pytest.raises(ValueError, match="2 \\* 3"):
        resize_crop(src, 0.0, 0.0, 300.0, 451.0, np.zeros((side, 3 * side), np.uint8), side, side, False,
                    *coeffs(), *coeffs(), np.empty(src.shape[1], np.float32), np.empty(3 * side, np.float32))


def _resize_with_scratch(src: np.ndarray, box: Tuple[float, float, float, float], out_h: int, out_w: int,
                         flip: bool, rows: int, slack: int = 0) -> np.ndarray:
    """``resize_crop`` with scratch for exactly ``rows`` output rows of this crop (2: the two-row block), plus
    ``slack`` floats (>= 1 with four rows: the SIMD horizontal pass; 0: the numba pass)."""
    top, left, ch, cw = box
    side = max(out_h, out_w)
    taps = max_taps(max(src.shape[0], src.shape[1] // 3), min(out_h, out_w))
    rw = min(math.ceil(left + cw), src.shape[1] // 3) - math.floor(left)
    coeffs = lambda: (np.empty(side, np.int64), np.empty(side, np.int64), np.empty((side, taps), np.float32))
    dst = np.zeros((out_h, out_w * 3), np.uint8)
    resize_crop(src, top, left, ch, cw, dst, out_h, out_w, flip, *coeffs(), *coeffs(),
                np.empty(rows * 3 * rw + slack, np.float32), np.empty(rows * 3 * out_w, np.float32))
    return dst


def test_four_row_blocks_equal_two_row_blocks_on_every_height():
    """The loader's scratch holds four rows (blocks of four output rows); scratch for two gives blocks of two.
    Both must give the same bytes, including the last, partial block (heights 1-3 mod 4), flipped or not,
    fractional boxes, up- and downscales; and the four-row output stays within 1 grey level of PIL."""
    rng = np.random.default_rng(3)
    img = PHOTOS["astronaut"]
    src = folded(img)
    H, W, _ = img.shape
    heights = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 97, 222, 223, 225]
    for i, out_h in enumerate(heights):
        out_w = int(rng.integers(1, 260))
        ch, cw = float(rng.integers(5, H + 1)), float(rng.integers(5, W + 1))
        top, left = float(rng.integers(0, H - ch + 1)), float(rng.integers(0, W - cw + 1))
        if i % 3 == 2:                                   # a half-pixel box (the 1/2-scale decode's crops)
            ch, top = ch - 0.5, top + 0.5
        box = (top, left, ch, cw)
        for flip in (False, True):
            four = _resize_with_scratch(src, box, out_h, out_w, flip, 4)
            two = _resize_with_scratch(src, box, out_h, out_w, flip, 2)
            np.testing.assert_array_equal(four, two, err_msg=f"{box} -> {(out_h, out_w)}, flip={flip}")
        if top == int(top) and ch == int(ch):
            ref = pil_resized_crop(img, int(top), int(left), int(ch), int(cw), out_h, out_w)
            ours = unfolded(four, out_h, out_w)[:, ::-1]      # ``four`` is the flipped one here
            assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1, f"{box} -> {(out_h, out_w)}"


def test_simd_horizontal_pass_equals_the_numba_pass():
    """The C (AVX2 + FMA) horizontal pass against the numba one: the same fused multiply-adds in tap order, but
    numba's fastmath may reassociate a long tap loop (large downscales), so a rare value rounds the other
    way: at most 1 grey level, on < 0.1% of the values, and within 1 grey level of PIL. Arbitrary boxes,
    whole-pixel and fractional, the whole image, flips, up- and downscales, 1-299 px outputs (the last pixel
    of a row takes the 3-float store)."""
    rng = np.random.default_rng(11)
    img = PHOTOS["coffee"]
    src = folded(img)
    H, W, _ = img.shape
    for i in range(120):
        ch, cw = rng.uniform(1, H), rng.uniform(1, W)
        top, left = rng.uniform(0, H - ch), rng.uniform(0, W - cw)
        if i % 3 == 0:
            top, left, ch, cw = float(int(top)), float(int(left)), float(max(1, int(ch))), float(max(1, int(cw)))
        if i == 1:
            top, left, ch, cw = 0.0, 0.0, float(H), float(W)
        out_h, out_w = int(rng.integers(1, 300)), int(rng.integers(1, 300))
        flip = bool(i % 2)
        simd = _resize_with_scratch(src, (top, left, ch, cw), out_h, out_w, flip, 4, slack=4)
        plain = _resize_with_scratch(src, (top, left, ch, cw), out_h, out_w, flip, 4)
        where = f"{(top, left, ch, cw)} -> {(out_h, out_w)}, flip={flip}"
        diff = np.abs(simd.astype(int) - plain.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, where
        if i % 3 == 0:
            ref = pil_resized_crop(img, int(top), int(left), int(ch), int(cw), out_h, out_w)
            ours = unfolded(simd, out_h, out_w)
            ours = ours[:, ::-1] if flip else ours
            assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1, where


def test_numba_fallback_of_the_simd_symbol_equals_the_c_pass():
    """On CPUs without AVX2 the symbol the compiled resize calls points at a numba callback instead of the C
    pass; both take the same arguments (float rows in, uint8 rows out) and give the same bytes within 1 level."""
    import ctypes

    from ffcv_ssl.ops import resize

    rng = np.random.default_rng(5)
    for rw, out_w, flip in ((300, 224, 0), (451, 97, 1), (40, 224, 1), (7, 3, 0), (1, 5, 1)):
        w3 = 3 * rw
        rows = (rng.random(4 * w3 + 1) * 255).astype(np.float32)
        taps = max_taps(rw, out_w)
        xs, xn = np.empty(out_w, np.int64), np.empty(out_w, np.int64)
        xw = np.empty((out_w, taps), np.float32)
        resize.filter_coeffs(rw, out_w, xs, xn, xw, 0.0, float(rw))
        args = [rows.ctypes.data + 4 * k * w3 for k in range(4)]
        outs = []
        for fn in (resize._hresize_rows4_numba.ctypes, resize._SIMD_ADDRESS):
            if fn is None:
                continue
            if not callable(fn):
                fn = ctypes.CFUNCTYPE(ctypes.c_int64, *[ctypes.c_uint64] * 11, *[ctypes.c_int64] * 4)(fn)
            d = np.full((4, 3 * out_w + 8), 7, np.uint8)
            fn(*args, *[d[k].ctypes.data for k in range(4)], xs.ctypes.data, xn.ctypes.data, xw.ctypes.data,
               w3, taps, out_w, flip)
            assert (d[:, 3 * out_w:] == 7).all()                  # nothing written past the row
            outs.append(d[:, :3 * out_w].astype(int))
        want = np.stack([np.clip(np.floor(0.5 + np.array([[sum(xw[o, k] * rows[r * w3 + 3 * (xs[o] + k) + c]
                                                                   for k in range(xn[o])) for c in range(3)]
                                                         for o in range(out_w)]).reshape(-1)), 0, 255)
                         for r in range(4)])
        if flip:
            want = want.reshape(4, out_w, 3)[:, ::-1].reshape(4, -1)
        for got in outs:
            assert np.abs(got - want).max() <= 1, (rw, out_w, flip)
        if len(outs) == 2:
            assert np.abs(outs[0] - outs[1]).max() <= 1


def test_simd_pass_is_built_and_used_where_the_cpu_has_it():
    """The extension is part of the install: on an x86 CPU with AVX2 and FMA the resize must use it (a build
    that silently lost it would only show up as a slower benchmark)."""
    import platform

    from ffcv_ssl.ops import resize

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the SIMD pass is x86 only")
    flags = set()
    with open("/proc/cpuinfo") as fp:
        for line in fp:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    assert resize.SIMD_HORIZONTAL == ({"avx2", "fma"} <= flags)


@pytest.mark.parametrize("crop,out", [((10, 20, 200, 300), (224, 224)), ((0, 0, 300, 451), (96, 160)),
                                      ((50, 100, 40, 30), (224, 224)), ((5, 7, 211, 97), (64, 200))])
def test_flip_is_the_mirrored_pil_resize(crop, out):
    img = PHOTOS["chelsea"]
    src = folded(img)
    plain = unfolded(_resize(src, *crop, *out, False), *out)
    mirrored = unfolded(_resize(src, *crop, *out, True), *out)
    np.testing.assert_array_equal(mirrored, plain[:, ::-1])
    ref = np.asarray(Image.fromarray(pil_resized_crop(img, *crop, *out)).transpose(Image.FLIP_LEFT_RIGHT))
    assert psnr(mirrored, ref) >= 35.0
    assert not np.array_equal(mirrored, plain)


def test_resize_to_the_same_size_is_exact():
    img = _resized("rocket", (75, 131))
    out = unfolded(_resize(folded(img), 0, 0, 75, 131, 75, 131, False), 75, 131)
    np.testing.assert_array_equal(out, img)


# --------------------------------------------------------------------------------------------------------------
# the per-view kernel applies the drawn parameters as torchvision's recipe would
# --------------------------------------------------------------------------------------------------------------

def _draw(recipes, height, width, seed=3, epoch=0, sample_ids=(0,)):
    vf, vi = recipes_to_arrays(recipes)
    n = len(sample_ids)
    pint = np.zeros((n, len(recipes), PARAM_INTS), np.int64)
    pflt = np.zeros((n, len(recipes), PARAM_FLOATS), np.float64)
    draw_params(np.asarray(sample_ids, np.int64), np.full(n, height, np.int64), np.full(n, width, np.int64),
                np.uint64(seed), epoch, vf, vi, pint, pflt)
    return vf, vi, pint, pflt


def _render(img: np.ndarray, recipes, sample_id: int, seed: int = 3):
    H, W, _ = img.shape
    vf, vi, pint, pflt = _draw(recipes, H, W, seed=seed, sample_ids=(sample_id,))
    oh, ow = int(vi[:, 0].max()), int(vi[:, 1].max())
    out = np.zeros((len(recipes), oh, ow * 3), np.uint8)
    side = max(oh, ow)
    render_views(folded(img), H, W, 1, out, pint[0], pflt[0], vi, side, max_taps(max(H, W), int(vi[:, :2].min())),
                 max(1, int(vi[:, 3].max())))
    return out, pint[0], pflt[0]


def test_render_views_applies_the_drawn_recipe_like_torchvision():
    """Full SimCLR + BYOL-solarize recipe on a photo, view by view, against torchvision ops fed the same draws.

    The reference starts from our own crop+resize (its fidelity to PIL is tested above), so the comparison
    isolates the plumbing: jitter order and factors, grayscale, blur sigma, solarize, flip.
    """
    img = _resized("coffee", (150, 210))
    full = ViewConfig(size=64, jitter=(0.8, 0.8, 0.8, 0.2), blur_p=0.5, solarize_p=0.4)
    plain = ViewConfig(size=64, jitter_p=0.0, gray_p=0.0, blur_p=0.0, solarize_p=0.0)
    seen = {"jitter": 0, "gray": 0, "blur": 0, "solar": 0, "flip": 0}
    for sample in range(24):
        out, (p,), (q,) = _render(img, [full], sample)
        base, (pb,), _ = _render(img, [plain], sample)
        assert np.array_equal(p[[P_TOP, P_LEFT, P_CH, P_CW, P_FLIP]], pb[[P_TOP, P_LEFT, P_CH, P_CW, P_FLIP]])
        t = to_tensor(unfolded(base[0], 64, 64))
        if p[P_JITTER]:
            order = [int(k) for k in p[P_ORDER:P_ORDER + 4]]
            assert sorted(order) == [0, 1, 2, 3]
            t = jitter_reference(t, order, q[Q_FACTORS:Q_FACTORS + 4])
        if p[P_GRAY]:
            t = TF.rgb_to_grayscale(t, 3)
        if p[P_BLUR]:
            t = blur_reference(t, kernel_size_for(64), float(q[Q_SIGMA]))
        if q[Q_SOLAR] >= 0:
            t = TF.solarize(t, float(q[Q_SOLAR]))
        got = unfolded(out[0], 64, 64)
        diff = int(np.abs(got.astype(int) - from_tensor(t).astype(int)).max())
        assert diff <= 3, f"sample {sample}: {diff} grey levels from torchvision with the same parameters"
        for k, flag in (("jitter", p[P_JITTER]), ("gray", p[P_GRAY]), ("blur", p[P_BLUR]),
                        ("solar", q[Q_SOLAR] >= 0), ("flip", p[P_FLIP])):
            seen[k] += bool(flag)
    assert all(0 < v < 24 for v in seen.values()), seen     # every branch was exercised, none always


def test_drawn_parameters_follow_the_recipe_ranges():
    recipe = ViewConfig(size=32, jitter=(0.4, 0.3, 0.2, 0.1), blur_sigma=(0.3, 1.5), solarize_p=0.2,
                        solarize_threshold=100.0, flip_p=0.5, jitter_p=0.8, gray_p=0.2, blur_p=0.5)
    _, _, pint, pflt = _draw([recipe], 200, 300, sample_ids=tuple(range(4000)))
    p, q = pint[:, 0], pflt[:, 0]
    for col, s in ((0, 0.4), (1, 0.3), (2, 0.2)):
        f = q[:, Q_FACTORS + col]
        assert f.min() >= 1 - s and f.max() <= 1 + s and ks_2samp(f, np.linspace(1 - s, 1 + s, 4000)).pvalue > 1e-3
    h = q[:, Q_FACTORS + 3]
    assert h.min() >= -0.1 and h.max() <= 0.1
    sig = q[:, Q_SIGMA]
    assert sig.min() >= 0.3 and sig.max() <= 1.5
    for col, prob in ((P_FLIP, 0.5), (P_JITTER, 0.8), (P_GRAY, 0.2), (P_BLUR, 0.5)):
        assert abs(p[:, col].mean() - prob) < 0.03, (col, p[:, col].mean())
    assert abs((q[:, Q_SOLAR] >= 0).mean() - 0.2) < 0.03 and set(q[q[:, Q_SOLAR] >= 0, Q_SOLAR]) == {100.0}
    # the jitter order is a uniform random permutation (24 of them)
    perms = [tuple(r) for r in p[:, P_ORDER:P_ORDER + 4]]
    counts = np.array([perms.count(c) for c in set(perms)])
    assert len(counts) == 24 and counts.min() > 4000 / 24 * 0.6
