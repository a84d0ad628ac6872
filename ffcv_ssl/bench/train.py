"""``ffcv-ssl bench train CONFIG``: does the loader keep the model busy? Model alone, loader alone, both.

(a) the training step alone on synthetic device tensors (views/s): the ceiling the loader must feed;
(b) the loader alone (finished views on the device, views/s);
(c) the real loop, loader + step (views/s) and the fraction of time it waits for data.
The **fed ratio** is (c) / (a): 1.0 means the loader costs the GPU nothing. Runs with and without
``torch.compile`` when asked. Same code on CPU (tiny settings, tested) and GPU (the targets).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List

from . import register_bench

SCHEMA = "ffcv-ssl/bench-train/1"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a pretraining config, e.g. configs/pretrain/simclr_rn50.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="e.g. data.train=data/imagenet_train.beton data.batch_size=256 data.num_workers=16")
    p.add_argument("--steps", type=int, default=30, help="timed steps per measurement (after --warmup)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, cudnn autotune)")
    p.add_argument("--compile", choices=("off", "on", "both"), default="off",
                   help="torch.compile the backbone: off, on, or both (two rows)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(cfg, steps: int, warmup: int) -> Dict[str, Any]:
    """The three rates for one config (``cfg.model.compile`` decides compilation)."""
    import torch

    from ..train.engine import build_run, train_step

    run = build_run(cfg)
    device, loader = run.device, run.loader
    views_per_sample = run.num_views
    batch = cfg.data.batch_size // max(1, run.env.world_size)
    sizes = [v.shape for v in cfg.data.views for _ in range(v.count)]
    run.objective.train()

    # (a) model alone on synthetic device tensors
    fmt = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    views = [torch.randn(batch, 3, h, w, device=device).to(run.dtype).contiguous(memory_format=fmt) for h, w in sizes]
    labels = torch.randint(0, max(2, run.info.num_classes), (batch,), device=device)
    for _ in range(warmup):
        train_step(run, views, labels)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(run, views, labels)
    _sync(device)
    model_rate = steps * batch * views_per_sample / (time.perf_counter() - t0)

    def batches():
        while True:
            for b in loader:
                yield b

    # (b) loader alone
    it = batches()
    for _ in range(warmup):
        next(it)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        b = next(it)
    _sync(device)
    loader_rate = steps * batch * views_per_sample / (time.perf_counter() - t0)

    # (c) both, as the training loop does it
    wait = 0.0
    for _ in range(warmup):
        b = next(it)
        train_step(run, b.views, b.label)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        tw = time.perf_counter()
        b = next(it)
        wait += time.perf_counter() - tw
        train_step(run, b.views, b.label)
    _sync(device)
    elapsed = time.perf_counter() - t0
    train_rate = steps * batch * views_per_sample / elapsed
    it.close()
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"compile": bool(cfg.model.compile), "device": str(device), "precision": run.precision,
            "arch": cfg.model.arch, "objective": cfg.objective.name, "batch": batch, "views": views_per_sample,
            "view_sizes": sizes, "workers": loader.num_workers,
            "model_views_per_s": model_rate, "loader_views_per_s": loader_rate, "train_views_per_s": train_rate,
            "fed_ratio": train_rate / model_rate, "data_wait_frac": wait / elapsed,
            "peak_gpu_memory_gb": peak / 2**30 if peak is not None else None}


@register_bench("train", help="training throughput: model alone, loader alone, both; the fed ratio")
def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..config import load_config
    from ..console import console
    from ..errors import UserError
    from ..train.config import TrainConfig

    if args.steps < 1 or args.warmup < 0:
        raise UserError("--steps must be >= 1 and --warmup >= 0")
    modes: List[bool] = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    rows = []
    for compiled in modes:
        cfg = load_config(TrainConfig, args.config, [*args.overrides, f"model.compile={str(compiled).lower()}",
                                                     "tensorboard=false"])
        rows.append(measure(cfg, args.steps, args.warmup))
    table = Table(title="bench train: views/s (a) model alone, (b) loader alone, (c) both; fed = c / a")
    for col in ("compile", "device", "arch", "batch x views", "(a) model", "(b) loader", "(c) train", "fed ratio",
                "data wait", "peak GPU GB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row("on" if r["compile"] else "off", f"{r['device']} {r['precision']}", r["arch"],
                      f"{r['batch']} x {r['views']}", f"{r['model_views_per_s']:,.0f}", f"{r['loader_views_per_s']:,.0f}",
                      f"{r['train_views_per_s']:,.0f}", f"{r['fed_ratio']:.2f}", f"{100 * r['data_wait_frac']:.1f}%",
                      "-" if r["peak_gpu_memory_gb"] is None else f"{r['peak_gpu_memory_gb']:.1f}")
    console.print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"schema": SCHEMA, "rows": rows}, indent=1) + "\n")
    return 0
