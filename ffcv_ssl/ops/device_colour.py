"""GPU-split mode: colour jitter, grayscale, blur and solarize as batched torch ops on the consumer's device.

In GPU-split mode the host kernel stops after crop + resize + flip (``render_views(host_colour=False)``)
and the rest of the recipe runs here, on the device the model runs on, so the host's cores only decode
and crop. Plain torch (no cupy, no custom CUDA build): the same code runs, and is tested, on CPU tensors.

Every op reproduces its numba kernel (``color.py``, ``blur.py``) in float32 with the same order of
operations, including the truncation back to integers after each op. The host kernels round every float
op as IEEE does (``color.EXACT_MATH``: no fused multiply-adds), and so do torch's element-wise ops, so the
two modes agree bit for bit on CPU tensors in practice; the tested bar is 1 grey level. Parameters
are per sample (``views.COLOUR_COLS`` columns, drawn by ``draw_params`` from the same counter-RNG keys
as the host path, delivered by ``decoder.ColourParams``). The random jitter order is applied as four
rounds: in round k every sample whose k-th op is brightness gets brightness, and so on, on the subset.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as F

from .color import BRIGHTNESS, CONTRAST, HUE, SATURATION
from .views import C_BLUR, C_FACTORS, C_GRAY, C_JITTER, C_ORDER, C_SIGMA, C_SOLAR

_F32 = torch.float32


def _const(value: float, like: torch.Tensor) -> torch.Tensor:
    """A float32 scalar tensor: the kernels' ``np.float32`` constants, not a double promoted per op."""
    return torch.tensor(value, dtype=_F32, device=like.device)


def _as_uint8(x: torch.Tensor) -> torch.Tensor:
    """``np.uint8(min(max(x, 0), 255))``: clamp, then truncate (in place, float32 kept)."""
    return x.clamp_(0.0, 255.0).trunc_()


def _luma(x: torch.Tensor) -> torch.Tensor:
    """0.2989 R + 0.587 G + 0.114 B in float32 (torchvision's weights), shape (n, h, w)."""
    return (x[..., 0] * _const(0.2989, x) + x[..., 1] * _const(0.587, x)) + x[..., 2] * _const(0.114, x)


def _per_sample(f: torch.Tensor) -> torch.Tensor:
    return f.to(_F32).view(-1, 1, 1, 1)




def brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _as_uint8(x * _per_sample(f))


def contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blend with the view's mean of the floored luma (``color.contrast``)."""
    h, w = x.shape[1], x.shape[2]
    mean = (_luma(x).floor_().sum(dim=(1, 2), dtype=torch.float64) / (h * w)).to(_F32).view(-1, 1, 1, 1)
    f = _per_sample(f)
    return _as_uint8(x * f + (1.0 - f) * mean)


def saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blend every pixel with its own floored luma (``color.saturation``)."""
    f = _per_sample(f)
    grey = (1.0 - f) * _luma(x).floor_().unsqueeze(-1)
    return _as_uint8(x * f + grey)


def hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """HSV hue rotation by ``shift`` turns, the branch-free form of ``color.hue`` (torchvision's semantics)."""
    inv255 = _const(1.0 / 255.0, x)
    rgb = x * inv255
    r, g, b = rgb.unbind(-1)
    maxc = rgb.amax(-1)
    chroma = maxc - rgb.amin(-1)
    zero = torch.zeros((), dtype=_F32, device=x.device)
    inv = torch.where(chroma > 0, 1.0 / chroma, zero)
    sat = torch.where(maxc > 0, chroma / maxc, zero)
    rc = (maxc - r) * inv
    gc = (maxc - g) * inv
    bc = (maxc - b) * inv
    hh = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hh = hh / 6.0 + 1.0                        # positive: truncation is floor
    hh = hh - hh.trunc()
    hh = hh + shift.to(_F32).view(-1, 1, 1) + 1.0
    hh = (hh - hh.trunc()) * 6.0
    vs = (maxc * sat).unsqueeze(-1)
    # k = (n + 6h) mod 6 with n = 5, 3, 1 for R, G, B; channel = V - V S clamp(min(k, 4 - k), 0, 1)
    k = hh.unsqueeze(-1) + torch.tensor([5.0, 3.0, 1.0], dtype=_F32, device=x.device)
    k = k - 6.0 * (k / 6.0).trunc()
    out = maxc.unsqueeze(-1) - vs * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return out.mul_(_const(255.999, x)).trunc_()


def grayscale(x: torch.Tensor) -> torch.Tensor:
    return _luma(x).trunc_().unsqueeze(-1).expand(-1, -1, -1, 3).contiguous()


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    t = _per_sample(threshold)
    return torch.where(x >= t, 255.0 - x, x)


def blur_radii(sigma: torch.Tensor, max_radius: int, h: int, w: int) -> torch.Tensor:
    """Each sample's radius, as ``blur.gaussian_taps``: min(max_radius, ceil(3.5 sigma)), at least 1, and
    below the view's shorter side (reflect padding)."""
    r = torch.clamp(torch.ceil(3.5 * sigma.to(torch.float64)), min=1).clamp(max=max_radius)
    return torch.clamp(r, max=min(h, w) - 1)


def gaussian_taps(sigma: torch.Tensor, max_radius: int, h: int, w: int,
                  static: bool = False) -> Tuple[torch.Tensor, int]:
    """Per-sample normalised taps ``(n, R + 1)`` (centre and one side) and R, the largest radius.

    Radius per sample as ``blur.gaussian_taps``: min(max_radius, ceil(3.5 sigma)), at least 1, and below
    the view's shorter side (reflect padding); taps beyond a sample's own radius are zero (adding 0 x a
    pixel changes no bit). ``static``: R is the view's largest possible radius, not the batch's (no host
    sync, one shape for torch.compile).
    """
    sigma = sigma.to(torch.float64)
    r = blur_radii(sigma, max_radius, h, w)
    if static:
        big = max(0, min(max_radius, min(h, w) - 1))
    else:
        big = int(r.max().item()) if r.numel() else 0      # a device sync if sigma is there: see apply_colour
    t = torch.arange(big + 1, dtype=torch.float64, device=sigma.device)
    taps = torch.exp(-0.5 * (t.view(1, -1) / sigma.view(-1, 1)) ** 2)
    taps = torch.where(t.view(1, -1) <= r.view(-1, 1), taps, torch.zeros_like(taps))
    taps = taps / (2.0 * taps.sum(dim=1, keepdim=True) - taps[:, :1])
    return taps.to(_F32), big


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_radius: int, static: bool = False) -> torch.Tensor:
    """Separable Gaussian blur with reflect borders and round-to-nearest, as ``blur.gaussian_blur``."""
    n, h, w, _ = x.shape
    if min(h, w) < 2:
        return x
    taps, big = gaussian_taps(sigma, max_radius, h, w, static)
    if big < 1:
        return x
    y = x.permute(0, 3, 1, 2)                                       # (n, 3, h, w)
    wt = [taps[:, t].view(-1, 1, 1, 1) for t in range(big + 1)]
    p = F.pad(y, (big, big, 0, 0), mode="reflect")
    acc = wt[0] * p[..., big:big + w]
    for t in range(1, big + 1):
        acc = acc + wt[t] * (p[..., big - t:big - t + w] + p[..., big + t:big + t + w])
    p = F.pad(acc, (0, 0, big, big), mode="reflect")
    out = wt[0] * p[:, :, big:big + h]
    for t in range(1, big + 1):
        out = out + wt[t] * (p[:, :, big - t:big - t + h] + p[:, :, big + t:big + t + h])
    out = _as_uint8(out + 0.5)
    return out.permute(0, 2, 3, 1)


# the four jitter ops by their code in the drawn order (color.BRIGHTNESS ...), and the value that skips each
JITTER_OPS: Dict[int, Tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], float]] = {
    BRIGHTNESS: (brightness, 1.0), CONTRAST: (contrast, 1.0), SATURATION: (saturation, 1.0), HUE: (hue, 0.0)}


def _apply(x: torch.Tensor, mask: torch.Tensor, fn: Callable[..., torch.Tensor], *args: torch.Tensor) -> None:
    """``x[mask] = fn(x[mask], *args[mask])`` on the subset only (gather, op, scatter).

    ``mask`` lives on the host (the decision needs no device sync); the indices travel to ``x``'s device.
    """
    idx = mask.nonzero().squeeze(1)
    if idx.numel():
        idx = idx.to(x.device, non_blocking=True)
        x[idx] = fn(x[idx], *(a[idx] for a in args))


def apply_colour(view: torch.Tensor, params: torch.Tensor, max_radius: int) -> torch.Tensor:
    """The colour part of the recipe for one view of a batch.

    Args:
        view: uint8 (or integer-valued float32) ``(B, h, w, 3)`` crops, on any device.
        params: ``(B, COLOUR_COLS)`` float64 colour parameters of this view (``ColourParams``), best on the
            host (as the loader delivers them): the per-op decisions are then made without a device sync.
        max_radius: the view's blur radius (kernel size // 2; 0: no blur in the recipe).
    Returns:
        float32 ``(B, h, w, 3)`` with integer values in [0, 255]: what the host kernel would have written.
    """
    x = view.to(_F32)
    # Which sample gets which op is decided on the host copy of the parameters (the loader delivers them on
    # the host): a mask computed on the GPU would need a device sync per op (~20 per view), each of which
    # drains the GPU's queue; only the values (factors, sigmas) travel to the device.
    host = params if params.device.type == "cpu" else params.cpu()
    dev = params.to(x.device, non_blocking=True)
    jitter = host[:, C_JITTER] != 0
    order = host[:, C_ORDER:C_ORDER + 4].to(torch.int64)
    factors = host[:, C_FACTORS:C_FACTORS + 4]
    for k in range(4):
        for op, (fn, identity) in JITTER_OPS.items():
            _apply(x, jitter & (order[:, k] == op) & (factors[:, op] != identity), fn, dev[:, C_FACTORS + op])
    _apply(x, host[:, C_GRAY] != 0, grayscale)
    blur = host[:, C_BLUR] != 0
    if max_radius > 0 and bool(blur.any()):
        # the batch's largest radius, from the host's sigmas: the blur then needs no device sync either
        h, w = x.shape[1], x.shape[2]
        radius = min(max_radius, int(blur_radii(host[blur, C_SIGMA], max_radius, h, w).max()))
        _apply(x, blur, lambda v, s: gaussian_blur(v, s, radius, static=True), dev[:, C_SIGMA])
    _apply(x, host[:, C_SOLAR] >= 0, solarize, dev[:, C_SOLAR])
    return x


def apply_colour_masked(view: torch.Tensor, params: torch.Tensor, max_radius: int) -> torch.Tensor:
    """``apply_colour`` written for ``torch.compile``: the same result, static shapes, no host sync.

    Every op runs on the whole batch and a per-sample mask keeps it or not (``torch.where``) instead of a
    gather/scatter of the subset; the blur always uses the view's full radius with zero taps beyond each
    sample's own. Eagerly this does ~4x the arithmetic of ``apply_colour``; compiled, the element-wise chains
    fuse into a few kernels that read and write each pixel once per op instead of once per arithmetic step.
    """
    x = view.to(_F32)
    jitter = params[:, C_JITTER] != 0
    order = params[:, C_ORDER:C_ORDER + 4].to(torch.int64)
    factors = params[:, C_FACTORS:C_FACTORS + 4]

    def keep(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.view(-1, 1, 1, 1), new, old)

    for k in range(4):
        for op, (fn, identity) in JITTER_OPS.items():
            x = keep(jitter & (order[:, k] == op) & (factors[:, op] != identity), fn(x, factors[:, op]), x)
    x = keep(params[:, C_GRAY] != 0, grayscale(x), x)
    if max_radius > 0:
        x = keep(params[:, C_BLUR] != 0, gaussian_blur(x, params[:, C_SIGMA], max_radius, static=True), x)
    return keep(params[:, C_SOLAR] >= 0, solarize(x, params[:, C_SOLAR]), x)


_COMPILED: Dict[str, Callable] = {}


def compiled_colour() -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    """``apply_colour_masked`` through ``torch.compile`` (one compile per view shape and radius, cached)."""
    if "fn" not in _COMPILED:
        _COMPILED["fn"] = torch.compile(apply_colour_masked, dynamic=False)
    return _COMPILED["fn"]
