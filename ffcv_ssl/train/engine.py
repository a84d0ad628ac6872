"""The pretraining loop: one function, explicit arguments, no globals; every method through one code path.

``pretrain(cfg)`` builds the multi-view loader, a timm backbone and the registered objective, LARS with
warm-up + cosine, optional DDP (torchrun or SLURM task variables; NCCL on GPU, gloo on CPU), bf16 autocast
on GPU, and resumes from the newest checkpoint in ``out_dir``. Resuming restores model, optimizer, scaler,
EMA target / queue, schedule position, loader epoch and batch, and RNG states; because every augmentation
is keyed by (seed, epoch, sample id) a resumed run reproduces the uninterrupted one.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from ..checkpoint import (_plain_config, apply_checkpoint, checkpoint_path, export_backbone, gather_rng,
                          latest_checkpoint, prune_checkpoints, read_checkpoint, restore_rng, save_checkpoint)
from ..config import save_config
from ..console import console, progress_bar, warning_line
from ..distributed import DistEnv, all_reduce_mean, cleanup, init_distributed, per_process_batch
from ..errors import UserError
from ..files import atomic_write_text
from ..loading.info import beton_info
from ..loading.loader import make_loader
from ..models import build_backbone, check_arch, maybe_sync_batchnorm
from ..objectives import build_objective
from ..optim import WarmupCosine, build_optimizer, scaled_lr
from .config import TrainConfig
from .metrics import MetricsLog
from .resume import PROVENANCE, check_resume, describe, new_segments, rescale_position, run_settings, summarize

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_device(cfg: TrainConfig, env_device: str) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is visible; use device=auto or device=cpu")
    return torch.device(env_device if cfg.device in ("auto", "cuda") else "cpu")


def resolve_precision(cfg: TrainConfig, device: torch.device) -> str:
    if cfg.precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if cfg.precision == "fp16" and device.type != "cuda":
        raise UserError("precision=fp16 needs a GPU; use precision=fp32 (or auto) on CPU")
    return cfg.precision


def pretrain_info(cfg: TrainConfig) -> Dict[str, Any]:
    """What results.json needs to know about this run (``PretrainInfo`` fields)."""
    info = beton_info(cfg.data.train)
    size = info.size or info.num_samples
    if cfg.data.subset != "all":
        from dataset_writers.subsets import parse_budget

        size = parse_budget(cfg.data.subset)
    return {"method": cfg.objective.name, "dataset": info.dataset, "size": size,
            "corruption": info.corruption, "pool": info.pool, "arch": cfg.model.arch, "epochs": cfg.optim.epochs,
            "seed": cfg.seed, "train_beton": info.path, "train_sha256": info.sha256}


@dataclass
class Run:
    """Everything a training loop (or ``bench train``) needs, built the same way for both."""

    cfg: TrainConfig
    env: Any
    device: torch.device
    precision: str
    info: Any
    indices: Optional[Any]
    objective: torch.nn.Module
    model: torch.nn.Module                      # the objective, wrapped in DDP when distributed
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosine
    scaler: Optional[Any]
    loader: Optional[Any]
    num_views: int
    bn_note: str = ""
    init_source: Optional[Any] = None

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.precision] if self.device.type == "cuda" else torch.float32


def build_run(cfg: TrainConfig, with_loader: bool = True, steps_per_epoch: int = 1) -> Run:
    """Checks (one line each, before any work), distributed init, model, objective, loader, optimiser."""
    out = Path(cfg.out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"out_dir {out} is a file; choose a directory")
    check_arch(cfg.model.arch)
    info = beton_info(cfg.data.train)                       # missing/foreign beton: one line, before any work
    if info.manifest is None and DistEnv.from_environ().rank == 0:
        from dataset_writers.manifest import manifest_path

        warning_line(f"{info.path} has no manifest ({manifest_path(info.path).name}): its dataset, checksum and "
                     f"class count are unknown ({info.num_classes} classes inferred from its labels) and results "
                     "will say so; rewrite it with 'ffcv-ssl write' to get one")
    local_batch = per_process_batch(cfg.data.batch_size, DistEnv.from_environ().world_size)
    env = init_distributed()
    device = resolve_device(cfg, env.device)
    precision = resolve_precision(cfg, device)

    indices = None
    if cfg.data.subset != "all":
        from dataset_writers.subsets import budget_positions, parse_budget
        from ..loading.info import beton_labels

        indices = budget_positions(beton_labels(cfg.data.train), parse_budget(cfg.data.subset), seed=cfg.data.subset_seed,
                                   balanced=cfg.data.subset_balanced, where=str(cfg.data.train))
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.model)
    init_source = None
    if cfg.init_from:
        from ..backbones import load_into

        init_source = load_into(backbone, cfg.init_from, cfg.model.arch)
    if cfg.freeze_backbone:
        for p in backbone.parameters():
            p.requires_grad_(False)
    objective = build_objective(cfg.objective, backbone, cfg.num_classes or info.num_classes)
    num_views = sum(v.count for v in cfg.data.views)
    objective.check_setup(num_views, cfg.data.batch_size)
    objective.to(device)
    objective, bn_note = maybe_sync_batchnorm(objective, cfg.model.sync_bn, device, env.world_size)
    if cfg.model.compile:
        objective.backbone.compile(mode=cfg.model.compile_mode)
    loader = None
    if with_loader:
        loader = make_loader(cfg.data, "train", seed=cfg.seed, distributed=env.distributed, device=device,
                             dtype=_DTYPES[precision] if device.type == "cuda" else torch.float32,
                             channels_last=cfg.model.channels_last, batch_size=local_batch, indices=indices)
        steps_per_epoch = len(loader)
    optimizer = build_optimizer(objective, cfg.optim, cfg.data.batch_size)
    schedule = WarmupCosine.from_config(optimizer, cfg.optim, steps_per_epoch, cfg.data.batch_size)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    model = objective
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(objective, device_ids=[device.index] if device.type == "cuda" else None,
                    forward_sync_buffers=False)
    return Run(cfg, env, device, precision, info, indices, objective, model, optimizer, schedule, scaler, loader,
               num_views, bn_note, init_source)


def train_step(run: Run, views, labels) -> Tuple[Dict[str, Any], Dict[str, float], float]:
    """One optimisation step; raises ``FloatingPointError`` on a non-finite loss before touching the weights."""
    with torch.autocast(run.device.type, dtype=_DTYPES[run.precision], enabled=run.precision != "fp32"):
        outputs = run.model(views, labels)
    loss = outputs["loss"]
    if not torch.isfinite(loss.detach()).item():
        raise FloatingPointError(float(loss.detach()))
    run.optimizer.zero_grad(set_to_none=True)
    lr = run.schedule.step()
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        run.optimizer.step()
    extra = run.objective.after_step(run.schedule.progress)
    return outputs, extra, lr


def check_out_dir(out: Path) -> None:
    """Raise the ``OSError`` (naming ``out``) that creating or writing ``out`` would meet, before any work and
    without creating anything: a read-only mount (EROFS), a path under a regular file (ENOTDIR), no permission.

    The CLI prints it as one line; checking first saves building the model and the loader for nothing.
    """
    import errno
    import os
    import tempfile

    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(out))
    try:
        with tempfile.TemporaryFile(dir=existing):     # O_TMPFILE on Linux: no name ever appears
            pass
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(out)) from None


def pretrain(cfg: TrainConfig) -> Dict[str, Any]:
    """Train (or resume) and return the summary written to ``out_dir/summary.json``."""
    check_out_dir(Path(cfg.out_dir))
    run = build_run(cfg)
    out = Path(cfg.out_dir)
    env, device, precision, info, indices = run.env, run.device, run.precision, run.info, run.indices
    objective, optimizer, schedule, scaler, loader = run.objective, run.optimizer, run.schedule, run.scaler, run.loader
    main = env.rank == 0
    num_views, bn_note, init_source = run.num_views, run.bn_note, run.init_source
    steps_per_epoch = len(loader)

    ckpt_dir = out / "checkpoints"
    step, epoch, start_batch = 0, 0, 0
    settings = run_settings(_plain_config(cfg), info.sha256)
    segments, changes = new_segments(settings), []
    resumed = latest_checkpoint(ckpt_dir)
    if resumed is not None:
        state = read_checkpoint(resumed)
        # the run-defining settings must match the checkpoint's, unless the user allows changes (resume_with_changes)
        segments, changes = check_resume(state, resumed, settings, cfg.resume_with_changes)
        apply_checkpoint(state, resumed, model=objective, optimizer=optimizer, scaler=scaler, schedule=schedule,
                         expected_arch=cfg.model.arch)
        restore_rng(state["rng"], env.rank)
        step, epoch, start_batch = state["step"], state["epoch"], state["batch_in_epoch"]
        if changes:
            start_batch = rescale_position(start_batch, (state.get("extra") or {}).get("steps_per_epoch"),
                                           steps_per_epoch)
            if start_batch >= steps_per_epoch:
                epoch, start_batch = epoch + 1, 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if changes:
            warning_line(f"resuming {resumed} with changed settings from step {step} on ({describe(changes)}); "
                         f"both are recorded in {out / PROVENANCE}")
        save_config(cfg, out / "config.yaml")
        atomic_write_text(out / PROVENANCE, json.dumps({"segments": segments}, indent=1, default=str) + "\n")
        n_used = len(indices) if indices is not None else info.num_samples
        console.print(f"[bold]pretrain[/] {cfg.objective.name} {cfg.model.arch} on {info.path} "
                      f"({n_used:,} images, {num_views} views) | world {env.world_size} | {device} "
                      f"{precision} | batch {cfg.data.batch_size} (lr {scaled_lr(cfg.optim, cfg.data.batch_size):.4g})"
                      f" | {bn_note}" + (f" | resumed from {resumed.name} (step {step})" if resumed else ""))
    log = MetricsLog(out, cfg.tensorboard, enabled=main)
    total_steps = cfg.optim.epochs * steps_per_epoch
    stop_at = min(total_steps, cfg.max_steps) if cfg.max_steps else total_steps

    def save(batch_in_epoch: int, at_epoch: int) -> None:
        rng = gather_rng()                                   # collective: every rank
        if main:
            save_checkpoint(checkpoint_path(ckpt_dir, step), model=objective, arch=cfg.model.arch, step=step,
                            epoch=at_epoch, batch_in_epoch=batch_in_epoch, optimizer=optimizer, scaler=scaler,
                            schedule=schedule, rng=rng, config=cfg,
                            extra={"segments": segments, "train_sha256": info.sha256,
                                   "steps_per_epoch": steps_per_epoch})
            prune_checkpoints(ckpt_dir, cfg.keep_checkpoints)

    t_start = time.perf_counter()
    wait_total, seen, last_loss = 0.0, 0, float("nan")
    window: Dict[str, float] = {}
    window_n = 0
    try:
        with progress_bar("loss", "lr", "rate") as bar:
            task = bar.add_task("pretrain", total=stop_at, completed=step, loss="", lr="", rate="")
            while step < stop_at:
                loader.set_epoch(epoch)
                objective.train()
                if cfg.freeze_backbone:
                    objective.backbone.eval()           # frozen: batch-norm statistics stay as pretrained
                t_wait = time.perf_counter()
                for i, batch in enumerate(loader.iterate(start_batch), start=start_batch):
                    wait_total += time.perf_counter() - t_wait
                    try:
                        outputs, extra, lr = train_step(run, batch.views, batch.label)
                    except FloatingPointError as exc:
                        raise UserError(f"loss is {exc} at step {step} (epoch {epoch}); stopped without saving. "
                                        f"Last good checkpoint: {latest_checkpoint(ckpt_dir) or 'none'}. "
                                        "Lower optim.lr or check the data") from None
                    step += 1
                    seen += len(batch) * env.world_size
                    for k, v in {**outputs, **extra}.items():
                        window[k] = window.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
                    window_n += 1
                    if step % cfg.log_every == 0 or step == stop_at:
                        means = {k: float(all_reduce_mean(torch.tensor(v / window_n, device=device)))
                                 for k, v in sorted(window.items())}
                        elapsed = time.perf_counter() - t_start
                        last_loss = means.get("loss", float("nan"))
                        log.log(step, {**means, "lr": lr, "epoch": epoch, "samples_per_s": seen / elapsed,
                                       "data_wait_frac": wait_total / elapsed})
                        window, window_n = {}, 0
                        bar.update(task, completed=step, loss=f"loss {last_loss:.4f}", lr=f"lr {lr:.3g}",
                                   rate=f"{seen / elapsed:,.0f} img/s")
                    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                        save(i + 1, epoch)
                    if step >= stop_at:
                        break
                    t_wait = time.perf_counter()
                else:
                    epoch, start_batch = epoch + 1, 0
                    save(0, epoch)
                    continue
                # stopped inside the epoch (max_steps): checkpoint where we are, resume continues here
                if i + 1 >= steps_per_epoch:
                    epoch, start_batch = epoch + 1, 0
                    save(0, epoch)
                else:
                    save(i + 1, epoch)
                break
    finally:
        log.close()
    elapsed = time.perf_counter() - t_start
    finished = step >= total_steps
    if finished and main and cfg.data.val:
        summary_eval = evaluate_classifier(objective, cfg, device, precision)
    else:
        summary_eval = None
    summary = {"finished": finished, "step": step, "total_steps": total_steps, "epoch": epoch,
               "final_loss": last_loss, "seconds": round(elapsed, 2), "samples_per_s": round(seen / max(elapsed, 1e-9), 2),
               "data_wait_frac": round(wait_total / max(elapsed, 1e-9), 4), "world_size": env.world_size,
               "device": str(device), "precision": precision, "pretrain": pretrain_info(cfg),
               "num_train": len(indices) if indices is not None else info.num_samples,
               "init_from": init_source.pretrain if init_source is not None else None, "val": summary_eval,
               "segments": summarize(segments, step)}
    if main:
        if finished:
            export_backbone(objective.backbone, out / "backbone.pth", cfg.model.arch,
                            extra={"pretrain": summary["pretrain"], "segments": summary["segments"]})
        atomic_write_text(out / ("summary.json" if finished else "progress.json"), json.dumps(summary, indent=1) + "\n")
    cleanup()
    return summary


@torch.no_grad()
def evaluate_classifier(objective: torch.nn.Module, cfg: TrainConfig, device: torch.device,
                        precision: str) -> Optional[Dict[str, Any]]:
    """Top-1/top-5 of a classifier objective (``head`` over the backbone) on ``data.val``, eval pipeline.

    Used by fine-tuning, supervised-from-scratch and the reference linear protocol; None for objectives
    without a classification head.
    """
    head = getattr(objective, "head", None)
    if head is None:
        return None
    loader = make_loader(cfg.data, "val", seed=cfg.seed, device=device,
                         dtype=_DTYPES[precision] if device.type == "cuda" else torch.float32,
                         channels_last=cfg.model.channels_last, batch_size=cfg.data.batch_size, drop_last=False)
    objective.eval()
    k = min(5, head.out_features)
    correct1 = correct5 = total = 0
    for batch in loader:
        with torch.autocast(device.type, dtype=_DTYPES[precision], enabled=precision != "fp32"):
            logits = head(objective.backbone(batch.views[0])).float()
        top = logits.topk(k, dim=1).indices
        labels = batch.label.to(top.device)
        correct1 += int((top[:, 0] == labels).sum())
        correct5 += int((top == labels[:, None]).any(dim=1).sum())
        total += len(labels)
    return {"top1": correct1 / total, "top5": correct5 / total, "count": total}
