"""GPU-split mode's device cost: colour augmentation per batch as a fraction of a ResNet-50 SimCLR bf16 step.

Usage (from the repository root; run by benchmarks/gpu_check.sh)::

    python benchmarks/gpu_augment.py BETON [--batch 256] [--iters 20] [--json OUT.json] [--device cuda]

What is timed (CUDA events around each call, median of ``--iters`` after warm-up):
(1) ``ViewFinisher`` with the colour parameters: colour jitter in random order, grayscale, blur and
    solarize (``ops/device_colour.py``) + float conversion, normalisation, channels_last, for 2 x 224-px
    views of ``--batch`` samples, parameters drawn by the loader's own ``draw_params`` (SimCLR recipe);
(2) the same finishing without the colour (what CPU-complete mode costs on the GPU);
(3) one ResNet-50 SimCLR training step at the same batch, bf16 + channels_last (``train_step``).
The GPU split's figure is ((1) - (2)) / (3): the GPU time the split adds per step; target <= 3%. (1) is
measured twice: eager (``apply_colour``, the default) and through ``torch.compile`` (``data.colour_compile``;
``--no-compile`` skips it), which fuses the element-wise chains.
The crops are real photographs (scikit-image / scikit-learn samples), randomly cropped and resized to
224 px on the host, so the ops see real statistics. ``--device cpu`` runs it all on CPU (smoke test).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET = 0.03


def _photo_crops(n: int, size: int, seed: int = 0):
    """``n`` uint8 (size, size, 3) random crops of the bundled photographs, resized with PIL bilinear."""
    import numpy as np
    import skimage.data
    from PIL import Image
    from sklearn.datasets import load_sample_image

    photos = [getattr(skimage.data, k)()[..., :3] for k in ("astronaut", "chelsea", "coffee", "rocket")]
    photos += [load_sample_image(f"{k}.jpg") for k in ("china", "flower")]
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        p = photos[i % len(photos)]
        h, w = p.shape[:2]
        ch, cw = int(rng.integers(h // 3, h + 1)), int(rng.integers(w // 3, w + 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(p[y:y + ch, x:x + cw])).resize((size, size)))
    return out


def _colour_params(n: int, views: int, size: int, seed: int = 0):
    """(n, views, COLOUR_COLS) parameters of the SimCLR recipe, from the loader's own draw."""
    import numpy as np

    from ffcv_ssl.loading import ViewConfig
    from ffcv_ssl.ops.decoder import recipes_to_arrays
    from ffcv_ssl.ops.views import COLOUR_COLS, PARAM_FLOATS, PARAM_INTS, colour_params, draw_params

    vf, vi = recipes_to_arrays([ViewConfig(size=size)] * views)
    pint = np.zeros((n, views, PARAM_INTS), np.int64)
    pflt = np.zeros((n, views, PARAM_FLOATS), np.float64)
    draw_params(np.arange(n, dtype=np.int64), np.full(n, 375, np.int64), np.full(n, 500, np.int64),
                np.uint64(seed), 0, vf, vi, pint, pflt)
    cols = np.zeros((n, views, COLOUR_COLS), np.float64)
    colour_params(pint, pflt, vi, cols)
    return cols, [int(r) for r in vi[:, 3]]


def _timed(fn, iters: int, warmup: int, device) -> float:
    """Median milliseconds of ``fn()`` (CUDA events on GPU, perf_counter on CPU)."""
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def measure(beton: str, batch: int, iters: int, device_name: str, warmup: int = 3, compiled: bool = True) -> dict:
    import numpy as np
    import torch

    from ffcv_ssl.config import load_config
    from ffcv_ssl.loading.config import IMAGENET_MEAN, IMAGENET_STD
    from ffcv_ssl.loading.finish import ViewFinisher
    from ffcv_ssl.train.config import TrainConfig
    from ffcv_ssl.train.engine import build_run, train_step

    device = torch.device(device_name)
    views, size = 2, 224
    crops = _photo_crops(batch * views, size).reshape(batch, views, size, size, 3)
    cols, radii = _colour_params(batch, views, size)
    uint8 = torch.from_numpy(np.ascontiguousarray(crops)).to(device)
    params = torch.from_numpy(cols).to(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    finisher = ViewFinisher([(size, size)] * views, IMAGENET_MEAN, IMAGENET_STD, dtype, True, blur_radii=radii)
    with_colour = _timed(lambda: finisher(uint8, params), iters, warmup, device)
    finish_only = _timed(lambda: finisher(uint8), iters, warmup, device)
    with_compiled = None
    if compiled:
        fused = ViewFinisher([(size, size)] * views, IMAGENET_MEAN, IMAGENET_STD, dtype, True, blur_radii=radii,
                             compile_colour=True)
        t0 = time.perf_counter()
        fused(uint8, params)                                   # compiles (once per view shape)
        compile_s = time.perf_counter() - t0
        with_compiled = _timed(lambda: fused(uint8, params), iters, warmup, device)

    cfg = load_config(TrainConfig, str(ROOT / "configs/pretrain/simclr_rn50.yaml"),
                      [f"data.train={beton}", f"data.batch_size={batch}", "model.sync_bn=false", "tensorboard=false",
                       f"device={device_name}"])
    run = build_run(cfg, with_loader=False, steps_per_epoch=100)
    run.objective.train()
    inputs = [v.to(run.dtype) for v in finisher(uint8)]
    labels = torch.zeros(batch, dtype=torch.long, device=device)
    step = _timed(lambda: train_step(run, inputs, labels), max(3, iters // 2), warmup, device)
    colour = max(0.0, with_colour - finish_only)
    out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "precision": run.precision, "batch": batch, "views": views, "size": size,
           "finish_with_colour_ms": with_colour, "finish_only_ms": finish_only, "colour_ms": colour,
           "simclr_step_ms": step, "colour_fraction_of_step": colour / step,
           "finish_with_colour_fraction_of_step": with_colour / step, "target": TARGET,
           "met": colour / step <= TARGET}
    if with_compiled is not None:
        fused_colour = max(0.0, with_compiled - finish_only)
        out.update({"compiled_finish_with_colour_ms": with_compiled, "compiled_colour_ms": fused_colour,
                    "compiled_colour_fraction_of_step": fused_colour / step, "compile_s": compile_s,
                    "compiled_met": fused_colour / step <= TARGET})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("beton", help="any training beton (the step needs a config with data.train; no image is read)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", default=None)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    args = p.parse_args(argv)
    out = measure(args.beton, args.batch, args.iters, args.device, compiled=not args.no_compile)
    print(f"GPU split, device-side colour for {out['batch']} x {out['views']} views @ {out['size']} px on "
          f"{out['device']}: {out['colour_ms']:.2f} ms (finishing with colour {out['finish_with_colour_ms']:.2f} ms, "
          f"without {out['finish_only_ms']:.2f} ms); ResNet-50 SimCLR {out['precision']} step "
          f"{out['simclr_step_ms']:.1f} ms; colour / step = {100 * out['colour_fraction_of_step']:.2f}% "
          f"(target <= {100 * TARGET:.0f}%: {'met' if out['met'] else 'NOT met'})")
    if "compiled_colour_ms" in out:
        print(f"  with torch.compile (data.colour_compile=true; compiled in {out['compile_s']:.0f} s): "
              f"{out['compiled_colour_ms']:.2f} ms, colour / step = {100 * out['compiled_colour_fraction_of_step']:.2f}% "
              f"({'met' if out['compiled_met'] else 'NOT met'})")
    if args.json:
        from ffcv_ssl.files import atomic_write_text

        atomic_write_text(args.json, json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
