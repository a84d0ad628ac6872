"""``ffcv-ssl bench loader``: the arithmetic and JSON of the report, the benchmark data, and the baselines' semantics.

Timing is never asserted (shared, noisy machines): only that every number is present, consistent with the
per-epoch measurements it was computed from, and that each contender does the work it claims to do.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ffcv_ssl.bench import loader as bench
from ffcv_ssl.bench import _photos
from ffcv_ssl.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--images", "24", "--batch-size", "8", "--epochs", "1", "--workers", "1", "--sweep", "--breakdown"]


# ---------------------------------------------------------------- arithmetic ----------------------------------

def test_summarise_is_the_median_of_per_epoch_rates():
    epochs = [{"samples": 100, "seconds": 1.0, "cpu_seconds": 2.0},     # 100/s, 50 per CPU-s
              {"samples": 100, "seconds": 4.0, "cpu_seconds": 4.0},     # 25/s (an outlier epoch), 25
              {"samples": 300, "seconds": 2.0, "cpu_seconds": 3.0}]     # 150/s, 100
    s = bench.summarise(epochs)
    assert s["samples_per_s"] == 100.0          # median, not the mean (91.7) nor total/time (71.4)
    assert s["samples_per_cpu_s"] == 50.0
    assert bench.summarise([]) == {"samples_per_s": None, "samples_per_cpu_s": None}


def test_ratios_and_targets():
    methods = {"ours": {"samples_per_s": 600.0}, "ffcv": {"samples_per_s": 100.0},
               "tv_v2": {"samples_per_s": 30.0}, "tv_pil": {"samples_per_s": 120.0},
               "decode": {"samples_per_s": 1000.0}}
    r = bench.ratios(methods)
    assert r == {"ours/ffcv": 6.0, "ours/tv_v2": 20.0, "ours/tv_pil": 5.0, "ours/decode": 0.6}
    t = bench.judge(r)
    assert {k: v["met"] for k, v in t.items()} == {"ours/ffcv": True, "ours/tv_v2": True,   # 20 >= 20: met
                                                   "ours/tv_pil": False, "ours/decode": True,
                                                   "ours_split/decode": False}           # not measured: not met
    assert {k: v["target"] for k, v in t.items()} == {"ours/ffcv": 5.0, "ours/tv_v2": 20.0, "ours/tv_pil": 6.0,
                                                      "ours/decode": 0.6, "ours_split/decode": 0.7}
    methods["tv_v2"] = {"samples_per_s": None}                            # a failed baseline: no ratio, not met
    assert bench.ratios(methods)["ours/tv_v2"] is None
    assert bench.judge(bench.ratios(methods))["ours/tv_v2"]["met"] is False
    # both modes against every baseline, the DCT-scaled ceilings included
    methods.update({"ours_split": {"samples_per_s": 1400.0}, "decode_dct": {"samples_per_s": 1250.0},
                    "decode_half": {"samples_per_s": 2500.0}})
    r = bench.ratios(methods)
    assert r["ours_split/decode"] == 1.4 and r["ours_split/decode_half"] == 0.56 and r["ours/decode_dct"] == 0.48
    assert r["ours_split/tv_v2"] is None
    assert bench.judge(r)["ours_split/decode"] == {"target": 0.7, "value": 1.4, "met": True}


def test_host_cost_per_mode():
    """CPU-ms per sample and cores per 5,000 views/s from samples per CPU-second (2 views per sample)."""
    cost = bench.host_cost({"samples_per_cpu_s": 250.0}, 2)
    assert cost["cpu_ms_per_sample"] == pytest.approx(4.0)
    assert cost["cores_per_5000_views_s"] == pytest.approx(10.0)      # 500 views per CPU-second
    assert bench.host_cost({"samples_per_cpu_s": None}, 2) == {"cpu_ms_per_sample": None,
                                                               "cores_per_5000_views_s": None}


def test_epoch_samples_are_whole_batches_and_feed_every_worker():
    assert bench.epoch_samples(1.0, 2048, 128, 2) == 2048
    assert bench.epoch_samples(0.125, 2048, 128, 2) == 256
    assert bench.epoch_samples(0.125, 512, 64, 2) == 128           # 64 would leave one DataLoader worker idle
    assert bench.epoch_samples(0.5, 100, 8, 1) == 48
    assert bench.epoch_samples(0.01, 24, 8, 4) == 24               # never more than the data
    assert bench.epoch_samples(1.0, 30, 8, 1) % 8 == 0
    settings = bench.Settings(images=2048, epochs=3, workers=2, batch_size=128, data_dir="x", seed=5, sweep=False,
                              quick=False)
    subsets = [set(bench.epoch_subset(settings, share)) for share in (0.125, 0.25, 0.5, 1.0)]
    assert [len(s) for s in subsets] == [256, 512, 1024, 2048]
    assert subsets[0] < subsets[1] < subsets[2] < subsets[3] == set(range(2048))   # nested: same images, fewer


def test_memory_summary_arithmetic():
    formula = {"view_buffers": 100, "decode_scratch": 10, "labels": 5, "total": 115}
    rss = {"after_imports": {"VmRSS": 1000, "RssAnon": 400, "RssFile": 600},
           "idle_after_warmup": {"VmRSS": 1500, "RssAnon": 700, "RssFile": 800},
           "peak_during_epochs": {"VmRSS": 1700, "RssAnon": 815, "RssFile": 885}}
    m = bench.memory_summary({"memory_formula": formula, "rss": rss, "pinned": None}, batches_per_epoch=16)
    assert m["measured_bytes"] == 115 and m["measured_over_formula"] == 1.0
    assert m["peak_rss_bytes"] == 1700 and m["peak_rss_delta_bytes"] == 700
    assert m["pinned"]["measured_bytes"] is None and m["pinned"]["buffer_bytes"] == 105
    assert "no CUDA" in m["pinned"]["note"]


def test_bad_settings_are_refused_before_any_work(tmp_path):
    args = argparse.Namespace(images=4, epochs=None, workers=1, batch_size=8, data_dir=str(tmp_path), json=None,
                              seed=0, sweep=False, quick=False)
    with pytest.raises(UserError, match="--images 4 must be at least --batch-size 8"):
        bench.resolve_settings(args)
    args.images, args.json = 16, str(tmp_path)
    with pytest.raises(UserError, match="is a directory"):
        bench.resolve_settings(args)
    quick = bench.resolve_settings(argparse.Namespace(images=None, epochs=None, workers=0, batch_size=None,
                                                      data_dir="x", json=None, seed=0, sweep=False, quick=True))
    assert (quick.images, quick.epochs, quick.batch_size) == (512, 2, 64)
    assert quick.workers == len(os.sched_getaffinity(0))


def test_cli_error_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ffcv_ssl", "bench", "loader", "--images", "4", "--batch-size", "8",
                           "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--batch-size 8" in proc.stderr
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- benchmark images --------------------------

def test_crop_geometry_is_deterministic_and_imagenet_shaped():
    seen = set()
    for pos in range(200):
        box, (h, w) = _photos.crop_geometry(3, pos, (427, 640))
        assert _photos.crop_geometry(3, pos, (427, 640)) == (box, (h, w))
        left, top, right, bottom = box
        assert 0 <= left < right <= 640 + 1e-9 and 0 <= top < bottom <= 427 + 1e-9
        assert max(h, w) == 500 and min(h, w) in (333, 375, 500)
        assert abs((right - left) / (bottom - top) - w / h) < 1e-9       # the crop has the output's shape
        seen.add((h, w))
    assert {(375, 500), (500, 375), (333, 500)} <= seen
    assert _photos.crop_geometry(4, 0, (427, 640)) != _photos.crop_geometry(3, 0, (427, 640))


@pytest.mark.parametrize("pos", [0, 4, 7, 12, 21])
def test_photo_crops_equal_a_bicubic_resize_of_the_whole_photo(pos):
    """``PhotoCrops`` cuts a region before resizing (10x faster); the pixels must be those of PIL's resize
    of the whole (possibly mirrored) photograph with the same box."""
    from PIL import Image

    src = _photos.PhotoCrops(seed=1, count=32)
    got = src.load(pos)
    photo = _photos.load_photo(src.label(pos))
    box, (h, w) = _photos.crop_geometry(1, pos, photo.shape[:2])
    if np.random.default_rng([1, pos, 1]).random() < 0.5:
        photo = photo[:, ::-1]
        box = (photo.shape[1] - box[2], box[1], photo.shape[1] - box[0], box[3])
    ref = np.asarray(Image.fromarray(np.ascontiguousarray(photo)).resize((w, h), Image.BICUBIC, box=box))
    assert got.shape == (h, w, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    assert np.array_equal(got, src.load(pos))


# ---------------------------------------------------------------- baselines' semantics -----------------------

def test_simclr_v2_is_the_literal_recipe():
    import torch
    from PIL import Image
    from torchvision.transforms import v2

    from ffcv_ssl.bench._baselines import simclr_v2

    t = simclr_v2(224)
    kinds = [type(x) for x in t.transforms]
    assert kinds == [v2.RandomResizedCrop, v2.RandomHorizontalFlip, v2.RandomApply, v2.RandomGrayscale,
                     v2.RandomApply, v2.ToImage, v2.ToDtype, v2.Normalize]
    rrc, flip, jitter, gray, blur = t.transforms[:5]
    assert list(rrc.size) == [224, 224] and tuple(rrc.scale) == (0.08, 1.0) and rrc.antialias
    assert flip.p == 0.5 and gray.p == 0.2
    cj = jitter.transforms[0]
    assert jitter.p == 0.8 and isinstance(cj, v2.ColorJitter)
    for strength in (cj.brightness, cj.contrast, cj.saturation):
        assert strength == pytest.approx((0.2, 1.8))
    assert cj.hue == pytest.approx((-0.2, 0.2))
    gb = blur.transforms[0]
    assert blur.p == 0.5 and list(gb.kernel_size) == [23, 23] and list(gb.sigma) == [0.1, 2.0]
    out = t(Image.fromarray(_photos.PhotoCrops(0, 4).load(1)))
    assert out.dtype == torch.float32 and tuple(out.shape) == (3, 224, 224)


def test_pil_simclr_crop_matches_torchvision_resized_crop():
    """With every random op switched off, the fast PIL path must equal torchvision's RandomResizedCrop."""
    import torch
    from PIL import Image
    from torchvision.transforms import RandomResizedCrop
    from torchvision.transforms.v2 import functional as F

    from ffcv_ssl.bench._baselines import PilSimCLR

    img = Image.fromarray(_photos.PhotoCrops(0, 8).load(3))
    fast = PilSimCLR(224, flip_p=0.0, jitter_p=0.0, gray_p=0.0, blur_p=0.0)
    for seed in range(4):
        torch.manual_seed(seed)
        i, j, h, w = RandomResizedCrop.get_params(img, scale=[0.08, 1.0], ratio=[3 / 4, 4 / 3])
        ref = F.pil_to_tensor(F.resized_crop(img, i, j, h, w, [224, 224], antialias=True))
        torch.manual_seed(seed)
        got = fast(img)
        assert got.dtype == torch.uint8 and tuple(got.shape) == (3, 224, 224)
        diff = (got.int() - ref.int()).abs()
        # interior identical; on the border row/column PIL's box filter may read one pixel past the crop
        assert diff[:, 2:-2, 2:-2].max() <= 1
        assert diff.float().mean() < 0.5
    blurred = PilSimCLR(224, flip_p=0.0, jitter_p=0.0, gray_p=0.0, blur_p=1.0, sigma=(2.0, 2.0))
    torch.manual_seed(0)
    sharp_out = fast(img)
    torch.manual_seed(0)
    blur_out = blurred(img)
    assert (blur_out.float().diff(dim=2).abs().mean() < 0.8 * sharp_out.float().diff(dim=2).abs().mean())


# ---------------------------------------------------------------- the command, end to end ----------------------

@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_loader")
    out = root / "result.json"
    env = {**os.environ, "FFCV_SSL_NO_PROGRESS": "1"}
    proc = subprocess.run([sys.executable, "-m", "ffcv_ssl", "bench", "loader", *TINY, "--data-dir", str(root / "data"),
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1200, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"doc": json.loads(out.read_text()), "stdout": proc.stdout, "data_dir": root / "data"}


@pytest.mark.slow
def test_json_has_every_contender_ratio_and_target(bench_run):
    doc = bench_run["doc"]
    assert doc["schema"] == bench.SCHEMA
    assert doc["settings"]["workers"] == 1 and doc["settings"]["images"] == 24
    assert doc["command"].startswith("ffcv-ssl bench loader --images 24")
    assert set(doc["betons"]) == {"500", "256"}
    for side, rec in doc["betons"].items():
        assert set(rec["methods"]) == set(bench.MAIN)
        for key, m in rec["methods"].items():
            assert m["error"] is None, (side, key, m["error"])
            assert len(m["epochs"]) == 1 and all(e["samples"] == m["samples_per_epoch"] for e in m["epochs"])
            assert m["samples_per_epoch"] % 8 == 0 and m["samples_per_epoch"] <= 24
            s = bench.summarise(m["epochs"])
            assert m["samples_per_s"] == s["samples_per_s"] and m["samples_per_cpu_s"] == s["samples_per_cpu_s"]
            assert m["samples_per_s"] > 0 and m["samples_per_cpu_s"] > 0
        for mode in bench.MODES:
            ours = rec["methods"][mode]["samples_per_s"]
            for key in bench.BASELINES:
                want = ours / rec["methods"][key]["samples_per_s"]
                assert rec["ratios"][f"{mode}/{key}"] == pytest.approx(want, rel=1e-9)
            host = rec["methods"][mode]["host"]
            assert host["cpu_ms_per_sample"] == pytest.approx(1e3 / rec["methods"][mode]["samples_per_cpu_s"])
            assert host["cores_per_5000_views_s"] == pytest.approx(
                5000 / (2 * rec["methods"][mode]["samples_per_cpu_s"]))
        fraction = rec["methods"]["decode_dct"]["half_scale_fraction"]
        assert 0.0 <= fraction <= 1.0 and rec["methods"]["decode_half"]["half_scale_fraction"] == 1.0
        assert rec["stats"]["images"] == 24
    targets = doc["betons"]["500"]["targets"]
    assert set(targets) == {"ours/ffcv", "ours/tv_v2", "ours/tv_pil", "ours/decode", "ours_split/decode"}
    for key, t in targets.items():
        assert t["value"] == doc["betons"]["500"]["ratios"][key] and t["met"] == (t["value"] >= t["target"])
    assert doc["betons"]["256"]["targets"] is None
    assert doc["load"]["500 px"]["load1_mean"] >= 0


@pytest.mark.slow
def test_json_sweep_breakdown_and_memory(bench_run):
    doc = bench_run["doc"]
    rows = doc["sweep"]["rows"]
    assert [(r["size"], r["views"]) for r in rows] == list(bench.SWEEP)
    for r in rows:
        assert r["error"] is None
        assert r["views_per_s"] == pytest.approx(r["samples_per_s"] * r["views"])
        assert r["views_per_s_per_core"] == pytest.approx(r["views_per_s"] / doc["settings"]["workers"])
    rows = doc["breakdown"]["rows"]
    assert [r["variant"] for r in rows] == [name for name, _ in bench.BREAKDOWN]
    assert rows[1]["overrides"] == {"jitter": [0.8, 0.8, 0.8, 0.0]} and rows[0]["overrides"] == {}
    for r in rows:
        assert r["error"] is None and r["cpu_ms_per_sample"] == pytest.approx(1e3 / r["samples_per_cpu_s"])
    mem = doc["memory"]
    f = mem["formula"]
    # (batches_ahead + 2) x batch x views x 224 x 224 x 3 bytes, ViewLoader's defaults
    assert f["view_buffers"] == 5 * 8 * 2 * 224 * 224 * 3
    assert mem["measured_bytes"] == (mem["rss"]["peak_during_epochs"]["RssAnon"]
                                     - mem["rss"]["idle_after_warmup"]["RssAnon"])
    assert mem["measured_over_formula"] == pytest.approx(mem["measured_bytes"] / f["total"])
    assert mem["pinned"]["buffer_bytes"] == f["view_buffers"] + f["labels"]


@pytest.mark.slow
def test_table_is_printed(bench_run):
    out = bench_run["stdout"]
    for needle in ("(a) ours", "(a2) ours, GPU split", "host cores per 5,000 views/s", "(d2) decode, 1/2 DCT",
                   "(b) stock ffcv", "(c1) torchvision v2", "(c2) torchvision PIL", "(d) decode only",
                   "ours/this", ">= 5x", ">= 0.6x", "views/s per core", "where ours' time goes", "hue off",
                   "memory_formula", "load average"):
        assert needle in out, needle


@pytest.mark.slow
def test_bench_files_are_the_betons_own_jpegs(bench_run):
    """The torchvision contenders must read byte for byte the JPEGs that the beton stores."""
    from PIL import Image

    data = _photos.build_bench_data(bench_run["data_dir"], 24, 0)        # cached: no rebuild
    marker = data.root / "complete.json"
    stamp = marker.stat().st_mtime_ns
    for side in _photos.SIZES:
        raw = np.memmap(data.betons[side], dtype=np.uint8, mode="r")
        entries = _photos.stored_jpegs(data.betons[side])
        assert len(entries) == len(data.files[side]) == 24
        for (ptr, size, h, w), path, label in zip(entries, data.files[side], data.labels):
            assert path.read_bytes() == raw[ptr:ptr + size].tobytes()
            assert path.parent.name == f"{label:02d}"
            with Image.open(path) as img:
                assert img.format == "JPEG" and img.size == (w, h)
            assert max(h, w) == side
    assert _photos.build_bench_data(bench_run["data_dir"], 24, 0).root == data.root
    assert marker.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_decode_ceiling_really_decodes(bench_run):
    """Contender (d) must produce the pixels of each JPEG (PIL's decode, up to libjpeg's fast IDCT)."""
    from PIL import Image

    from ffcv_ssl.bench._baselines import DecodeOnly, Task

    data = _photos.build_bench_data(bench_run["data_dir"], 24, 0)
    task = Task(kind="decode", beton=str(data.betons[500]), files=(), labels=(), indices=tuple(range(8)), workers=1,
                batch_size=8)
    d = DecodeOnly(task)
    d.setup()
    d.bufs[:] = 0
    d.kernel(d.data, d.offsets, d.sizes, d.heights, d.widths, np.arange(8), d.bufs)
    for k in range(8):
        h, w = int(d.heights[k]), int(d.widths[k])
        got = d.bufs[k, : h * w * 3].reshape(h, w, 3).astype(int)
        ref = np.asarray(Image.open(data.files[500][k]).convert("RGB")).astype(int)
        # TJFLAG_FASTDCT vs PIL's accurate IDCT: ~1 grey level on average, a few at most
        assert np.abs(got - ref).mean() < 1.5 and np.percentile(np.abs(got - ref), 99) <= 5
        assert np.abs(got - ref).max() <= 16
    assert d.run_epoch(1) == 8


@pytest.mark.slow
def test_dct_scaled_ceilings_really_decode_at_half_scale(bench_run):
    """(d3) decodes every JPEG at 1/2 DCT scale (PIL's draft mode is libjpeg's same scaled IDCT); (d2) only
    the samples whose crops all allow it under ours' rule, which for 2 x 224-px views of <= 500-px images is
    rare (a crop must be >= 448 px on both sides)."""
    from PIL import Image

    from ffcv_ssl.bench._baselines import DecodeAllHalf, DecodeWhereScalingApplies, Task

    data = _photos.build_bench_data(bench_run["data_dir"], 24, 0)
    task = Task(kind="decode_half", beton=str(data.betons[500]), files=(), labels=(), indices=tuple(range(8)),
                workers=1, batch_size=8)
    d = DecodeAllHalf(task)
    d.setup()
    d.bufs[:] = 0
    d.kernel(d.data, d.offsets, d.sizes, d.heights, d.widths, np.arange(8), np.full(8, 2, np.int64), d.bufs)
    for k in range(8):
        h, w = (int(d.heights[k]) + 1) // 2, (int(d.widths[k]) + 1) // 2
        got = d.bufs[k, : h * w * 3].reshape(h, w, 3).astype(int)
        with Image.open(data.files[500][k]) as img:
            img.draft("RGB", (int(d.widths[k]) // 2, int(d.heights[k]) // 2))    # Pillow: scale = size // request
            ref = np.asarray(img.convert("RGB")).astype(int)
        assert ref.shape == got.shape
        assert np.abs(got - ref).mean() < 1.5 and np.percentile(np.abs(got - ref), 99) <= 5
    assert d.run_epoch(1) == 8 and d.halves == [1.0]
    dct = DecodeWhereScalingApplies(replace_kind(task, "decode_dct"))
    dct.setup()
    denoms = dct.denominators(np.arange(8), 0)
    assert set(denoms.tolist()) <= {1, 2} and (denoms == 1).mean() >= 0.5


def replace_kind(task, kind):
    from dataclasses import replace

    return replace(task, kind=kind)
