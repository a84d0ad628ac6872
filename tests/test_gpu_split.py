"""GPU-split mode on CPU tensors: the device-side colour ops equal the host (CPU-complete) kernels.

The host kernel in split mode stops after crop + resize + flip; ``device_colour.apply_colour`` then applies
the colour parameters that ``ColourParams`` delivers. Everything here runs on CPU tensors (the same torch
code runs on CUDA, tested in test_gpu.py): each op against its numba kernel on real photographs for fixed
parameters, the whole recipe sample by sample for drawn parameters (same seed, same counter-RNG draws),
and the loader end to end in both modes. The bar is 1 grey level everywhere.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ffcv_ssl.ops import color
from ffcv_ssl.ops import device_colour as dc
from ffcv_ssl.ops.decoder import recipes_to_arrays
from ffcv_ssl.ops.recipe import ViewConfig
from ffcv_ssl.ops.resize import max_taps
from ffcv_ssl.ops.views import (COLOUR_COLS, C_BLUR, C_GRAY, C_JITTER, C_SOLAR, PARAM_FLOATS, PARAM_INTS,
                                colour_params, draw_params, render_views)

from test_ops import PHOTOS, _resized, blur_ours, folded, unfolded


def _batch(names, size):
    """Photos resized to ``size`` as a uint8 (n, h, w, 3) tensor."""
    return torch.from_numpy(np.stack([_resized(n, size) for n in names]))


NAMES = list(PHOTOS)


def _host(kernel, img: np.ndarray, *args) -> np.ndarray:
    h, w, _ = img.shape
    arr = folded(img)
    kernel(arr, h, w, *args)
    return unfolded(arr, h, w)


def _max_diff(a, b) -> int:
    return int(np.abs(np.asarray(a, np.int64) - np.asarray(b, np.int64)).max())


JITTER_CASES = [(color.brightness, dc.brightness, f) for f in (0.25, 0.7, 1.35, 1.8)] + \
               [(color.contrast, dc.contrast, f) for f in (0.2, 0.6, 1.4, 1.8)] + \
               [(color.saturation, dc.saturation, f) for f in (0.0, 0.45, 1.3, 1.8)] + \
               [(color.hue, dc.hue, f) for f in (-0.5, -0.31, -0.05, 0.12, 0.44, 0.5)]


@pytest.mark.parametrize("host, device, factor", JITTER_CASES,
                         ids=[f"{h.__name__}{f}" for h, _, f in JITTER_CASES])
def test_each_jitter_op_equals_its_host_kernel(host, device, factor):
    x = _batch(NAMES, (75, 131))
    got = device(x.float(), torch.full((len(NAMES),), factor, dtype=torch.float64))
    for k, name in enumerate(NAMES):
        want = _host(host, x[k].numpy(), factor)
        assert _max_diff(got[k].numpy(), want) <= 1, name
        assert (got[k].numpy() != want).mean() < 0.001, name       # bit-exact in practice (IEEE rounding both sides)


def test_grayscale_solarize_and_blur_equal_their_host_kernels():
    x = _batch(NAMES, (120, 67))
    n = len(NAMES)
    gray = dc.grayscale(x.float())
    for k in range(n):
        assert _max_diff(gray[k].numpy(), _host(color.grayscale, x[k].numpy())) == 0
    for thr in (0.0, 64.0, 200.5, 255.0):
        sol = dc.solarize(x.float(), torch.full((n,), thr, dtype=torch.float64))
        for k in range(n):
            assert _max_diff(sol[k].numpy(), _host(color.solarize, x[k].numpy(), thr)) == 0
    # per-sample sigmas in one batch (radii 1..11, kernel 23), and a radius capped by the kernel size
    for kernel, sigmas in ((23, (0.1, 0.6, 1.3, 2.0, 0.25, 1.7)), (5, (0.9, 2.0, 0.3, 1.1, 0.5, 1.9))):
        sig = torch.tensor(sigmas, dtype=torch.float64)
        got = dc.gaussian_blur(x.float(), sig, kernel // 2)
        for k in range(n):
            want = blur_ours(x[k].numpy(), kernel, sigmas[k])
            assert _max_diff(got[k].numpy(), want) <= 1, (kernel, sigmas[k])
            assert (got[k].numpy() != want).mean() < 0.001


def test_blur_on_views_smaller_than_the_kernel():
    x = _batch(NAMES[:3], (5, 9))
    sig = torch.tensor([2.0, 0.8, 1.5], dtype=torch.float64)
    got = dc.gaussian_blur(x.float(), sig, 11)
    for k in range(3):
        assert _max_diff(got[k].numpy(), blur_ours(x[k].numpy(), 23, float(sig[k]))) <= 1


RECIPES = {
    "simclr": [ViewConfig(size=64), ViewConfig(size=48)],
    "byol": [ViewConfig(size=56, blur_p=1.0, solarize_p=0.0),
             ViewConfig(size=56, blur_p=0.1, solarize_p=0.2)],
    "strong": [ViewConfig(size=40, width=52, jitter_p=1.0, jitter=(0.9, 0.9, 0.9, 0.5), gray_p=0.3, blur_p=0.7,
                          solarize_p=0.5, solarize_threshold=100.0)],
}


def _render_both(img: np.ndarray, recipes, sample_ids, seed=5, epoch=2):
    """For each sample: the host-complete views, the split-mode crops, and the split-mode colour parameters."""
    H, W, _ = img.shape
    vf, vi = recipes_to_arrays(recipes)
    n, v = len(sample_ids), len(recipes)
    pint = np.zeros((n, v, PARAM_INTS), np.int64)
    pflt = np.zeros((n, v, PARAM_FLOATS), np.float64)
    draw_params(np.asarray(sample_ids, np.int64), np.full(n, H, np.int64), np.full(n, W, np.int64),
                np.uint64(seed), epoch, vf, vi, pint, pflt)
    cols = np.zeros((n, v, COLOUR_COLS), np.float64)
    colour_params(pint, pflt, vi, cols)
    oh, ow = int(vi[:, 0].max()), int(vi[:, 1].max())
    full = np.zeros((n, v, oh, ow * 3), np.uint8)
    crops = np.zeros_like(full)
    args = (max(oh, ow), max_taps(max(H, W), int(vi[:, :2].min())), max(1, int(vi[:, 3].max())))
    for b in range(n):
        render_views(folded(img), H, W, 1, full[b], pint[b], pflt[b], vi, *args)
        render_views(folded(img), H, W, 1, crops[b], pint[b], pflt[b], vi, *args, False)
    return vi, full.reshape(n, v, oh, ow, 3), crops.reshape(n, v, oh, ow, 3), cols


@pytest.mark.parametrize("name", list(RECIPES))
def test_split_mode_equals_cpu_complete_sample_by_sample(name):
    """Same seed, same draws: device colour on the split crops = the host kernel's views, within 1 grey level."""
    recipes = RECIPES[name]
    img = _resized("coffee", (150, 210))
    vi, full, crops, cols = _render_both(img, recipes, list(range(40)))
    touched = np.zeros(4, int)
    for v, r in enumerate(recipes):
        h, w = r.shape
        got = dc.apply_colour(torch.from_numpy(crops[:, v, :h, :w].copy()), torch.from_numpy(cols[:, v]),
                              int(vi[v, 3])).numpy()
        for b in range(len(got)):
            want = full[b, v, :h, :w]
            assert _max_diff(got[b], want) <= 1, f"{name} view {v} sample {b}"
            assert (got[b] != want).mean() < 0.001
        touched += [(cols[:, v, c] != 0).sum() for c in (C_JITTER, C_GRAY, C_BLUR)] + [(cols[:, v, C_SOLAR] >= 0).sum()]
    # the colour ops really ran (otherwise equality would be trivial), and the crops differ from the views
    assert touched[0] > 0 and touched[2] > 0
    assert (crops != full).mean() > 0.2


def test_split_crops_are_the_host_views_before_colour():
    """With the colour switched off in the recipe, both modes write identical bytes (geometry is shared)."""
    plain = [ViewConfig(size=64, jitter_p=0.0, gray_p=0.0, blur_p=0.0)]
    _, full, crops, cols = _render_both(_resized("astronaut", (131, 97)), plain, list(range(10)))
    assert np.array_equal(full, crops)
    assert (cols[..., C_JITTER] == 0).all() and (cols[..., C_GRAY] == 0).all() and (cols[..., C_BLUR] == 0).all()


# ---------------------------------------------------------------- the loader, both modes --------------------------

@pytest.fixture(scope="module")
def beton(tmp_path_factory):
    from loader_support import varied_photos, write_beton

    return write_beton(tmp_path_factory.mktemp("split") / "photos.beton", varied_photos(24, (90, 170), seed=4),
                       "jpg", 160)


def _grey_levels(loader, batch):
    """Back from normalised floats to grey levels (the finisher's exact inverse, rounded)."""
    fin = loader.finisher
    return [torch.round(x.float() / fin._inv_std + fin._mean).to(torch.int64) for x in batch.views]


def test_loader_split_mode_equals_cpu_complete_mode(beton):
    from ffcv_ssl.loading import ViewConfig, ViewLoader

    views = [ViewConfig(count=2, size=64)]
    host = ViewLoader(str(beton), views, batch_size=8, num_workers=1, seed=11, colour_on="host")
    split = ViewLoader(str(beton), views, batch_size=8, num_workers=1, seed=11, colour_on="device")
    assert host.colour_on == "host" and split.colour_on == "device"
    assert not split.decoder.host_colour and host.decoder.host_colour
    for epoch in (0, 1):
        host.set_epoch(epoch)
        split.set_epoch(epoch)
        n = 0
        for a, b in zip(host, split):
            assert torch.equal(a.label, b.label)
            for x, y in zip(_grey_levels(host, a), _grey_levels(split, b)):
                assert x.shape == y.shape and int((x - y).abs().max()) <= 1
                assert (x != y).float().mean() < 0.02
                assert y.min() >= 0 and y.max() <= 255
            n += 1
        assert n == 3


def test_colour_on_auto_is_device_on_cuda_only(beton):
    from ffcv_ssl.errors import ConfigError
    from ffcv_ssl.loading import DataConfig, ViewConfig, ViewLoader, eval_view
    from ffcv_ssl.loading.loader import resolve_colour_on

    assert resolve_colour_on("auto", torch.device("cuda")) == "device"
    assert resolve_colour_on("auto", torch.device("cpu")) == "host"
    assert resolve_colour_on("host", torch.device("cuda")) == "host"
    assert resolve_colour_on("device", torch.device("cpu")) == "device"
    auto = ViewLoader(str(beton), [ViewConfig(count=1, size=32)], batch_size=8, num_workers=1)
    assert auto.colour_on == "host" and auto.decoder.host_colour
    # views without any colour op (evaluation, supervised) have nothing to split: no parameter pipeline
    plain = ViewLoader(str(beton), [eval_view(32)], batch_size=8, num_workers=1, colour_on="device")
    assert plain.colour_on == "host" and "__colour_params" not in plain.loader.pipeline_specs
    with pytest.raises(ConfigError, match="data.colour_on"):
        DataConfig(train=str(beton), colour_on="gpu").validate()
    DataConfig(train=str(beton), colour_on="device", colour_compile=True).validate()


def test_masked_form_equals_the_subset_form_and_the_host():
    """``apply_colour_masked`` (static shapes, for torch.compile) gives the same bytes as ``apply_colour``."""
    for name in ("simclr", "strong"):
        recipes = RECIPES[name]
        vi, full, crops, cols = _render_both(_resized("china", (140, 190)), recipes, list(range(24)))
        for v, r in enumerate(recipes):
            h, w = r.shape
            x, p = torch.from_numpy(crops[:, v, :h, :w].copy()), torch.from_numpy(cols[:, v])
            masked = dc.apply_colour_masked(x, p, int(vi[v, 3]))
            assert torch.equal(masked, dc.apply_colour(x, p, int(vi[v, 3])))
            assert _max_diff(masked.numpy(), full[:, v, :h, :w]) <= 1


@pytest.mark.slow
def test_compiled_colour_equals_the_host_kernels():
    """torch.compile of the masked form (inductor; minutes to compile on a busy 2-core machine)."""
    recipes = RECIPES["strong"]
    vi, full, crops, cols = _render_both(_resized("coffee", (150, 210)), recipes, list(range(16)))
    h, w = recipes[0].shape
    got = dc.compiled_colour()(torch.from_numpy(crops[:, 0, :h, :w].copy()), torch.from_numpy(cols[:, 0]),
                               int(vi[0, 3])).numpy()
    d = np.abs(got - full[:, 0, :h, :w])
    assert d.max() <= 1 and (d != 0).mean() < 0.001
