"""Resumable checkpoints (atomic: temp file + rename) and the pretrained backbone in a form timm loads directly.

A training checkpoint is one ``torch.save`` dict that ``torch.load(weights_only=True)`` can read (tensors,
numbers, strings, lists, dicts only): the objective's state (backbone, heads, EMA target, MoCo queue), the
optimizer, the AMP scaler, the schedule position, the loader position, every process's RNG states and the
resolved config. The exported backbone is a bare ``state_dict`` of ``timm.create_model(arch, num_classes=0)``::

    timm.create_model(arch, pretrained=True, num_classes=0, pretrained_cfg_overlay=dict(file=path))

timm loads such files with ``strict=False`` when ``num_classes=0`` (missing keys are only logged), so a file
from another architecture could load silently half-empty: ``load_backbone`` checks keys and shapes first.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np
import torch
from torch import nn

from .errors import UserError
from .files import atomic_write, atomic_write_text
from .util import file_sha256

__all__ = [
    "CHECKPOINT_FORMAT", "capture_rng", "gather_rng", "restore_rng", "save_checkpoint", "load_checkpoint",
    "read_checkpoint", "apply_checkpoint",
    "checkpoint_path", "latest_checkpoint", "prune_checkpoints", "export_backbone", "load_backbone",
    "check_backbone_file", "file_sha256", "unwrap",
]

CHECKPOINT_FORMAT = "ffcv-ssl-checkpoint-v1"
PathLike = Union[str, os.PathLike]
_CKPT_RE = re.compile(r"^ckpt_(\d+)\.pt$")


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP (``.module``) and/or ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _first_line(exc: Exception, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _os_error_in(exc: BaseException) -> Optional[OSError]:
    """The ``OSError`` behind ``exc``: torch's zip writer turns a failed ``write`` (ENOSPC) into a RuntimeError
    whose context is the real error."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` through ``atomic_write``; a failed write (full disk, quota, I/O error) is re-raised as an
    ``OSError`` that names ``path`` (the CLI prints it as one line), and leaves neither the temporary nor a
    partial file under ``path``; an older checkpoint stays as it was."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())

    try:
        return atomic_write(path, write)
    except (OSError, RuntimeError) as exc:
        cause = _os_error_in(exc)
        if cause is None:
            raise
        if cause.filename is not None and cause is exc:
            raise
        raise OSError(cause.errno, cause.strerror, str(path)) from exc


# ---------------------------------------------------------------------------------------------------- RNG states

def capture_rng() -> Dict[str, Any]:
    """This process's RNG states (python, numpy's global, torch CPU, CUDA of the current device if any).

    Stored as tensors/ints so the checkpoint stays loadable with ``weights_only=True``. numba's own RNG (used
    inside compiled loader kernels) cannot be read from Python: the loader must reseed it per epoch/batch.
    """
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "python": [version, list(mt_state), gauss],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def gather_rng() -> List[Dict[str, Any]]:
    """``capture_rng()`` of every process, in rank order (a one-element list in a single process).

    Collective: every rank must call it, also those that do not write the checkpoint.
    """
    import torch.distributed as dist

    mine = capture_rng()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [mine]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, mine)
    return out


def restore_rng(states: Union[Mapping[str, Any], List[Mapping[str, Any]]], rank: int = 0) -> None:
    """Restore RNG states saved by ``capture_rng`` (one dict) or ``gather_rng`` (a list: entry ``rank`` is used).

    When the world size changed since the checkpoint, rank ``r`` takes entry ``r % len(states)``.
    """
    state = states[rank % len(states)] if isinstance(states, list) else states
    version, mt_state, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in mt_state), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), int(np_state["pos"]),
                         int(np_state["has_gauss"]), float(np_state["cached_gaussian"])))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


# ------------------------------------------------------------------------------------------ training checkpoints

def _plain_config(config: Any) -> Any:
    """A dataclass config as nested dicts/lists of primitives (readable with ``weights_only=True``)."""
    if config is None:
        return None
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    return json.loads(json.dumps(config, default=str))


def save_checkpoint(path: PathLike, *, model: nn.Module, arch: str, step: int, epoch: int, batch_in_epoch: int = 0,
                    optimizer: Optional[torch.optim.Optimizer] = None, scaler: Any = None, schedule: Any = None,
                    rng: Optional[List[Dict[str, Any]]] = None, config: Any = None,
                    extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write a resumable checkpoint atomically: a crash leaves the previous file, never half a file.

    Args:
        path: target file (see ``checkpoint_path``).
        model: the objective (DDP/compile wrappers are removed); its state_dict holds backbone, heads, the
            EMA target and the MoCo queue.
        arch: the backbone's timm name, checked on resume and export.
        step: optimizer steps done.
        epoch: the loader epoch to resume in.
        batch_in_epoch: batches of ``epoch`` already consumed (0 at an epoch boundary).
        optimizer: its state (momentum buffers).
        scaler: a ``torch.amp.GradScaler`` (fp16 only; bf16 needs none).
        schedule: an object with ``state_dict()`` (``WarmupCosine``).
        rng: the output of ``gather_rng()`` (every rank's states); None captures this process's states only.
        config: the resolved run config (a dataclass), stored as plain dicts.
        extra: anything else picklable with weights_only (e.g. best metric).

    Call on rank 0 only (after ``gather_rng()`` on every rank).
    """
    state = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "step": int(step),
        "epoch": int(epoch),
        "batch_in_epoch": int(batch_in_epoch),
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "schedule": schedule.state_dict() if schedule is not None else None,
        "rng": rng if rng is not None else [capture_rng()],
        "config": _plain_config(config),
        "extra": extra or {},
        "torch_version": str(torch.__version__),
    }
    return _atomic_save(state, Path(path))


def read_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Read and check a checkpoint without loading it into anything (a resume compares its config first).

    Raises:
        UserError: missing or unreadable file, or not an ffcv-ssl checkpoint (one line each).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist; check the path or start without resuming")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt file; one line is the point
        raise UserError(f"checkpoint '{path}' cannot be read ({_first_line(exc)}); "
                        "delete it to resume from an older one") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"'{path}' is not an ffcv-ssl training checkpoint (format {CHECKPOINT_FORMAT}); "
                        "exported backbones load with load_backbone()")
    return state


def apply_checkpoint(state: Dict[str, Any], path: PathLike, *, model: Optional[nn.Module] = None,
                     optimizer: Optional[torch.optim.Optimizer] = None, scaler: Any = None, schedule: Any = None,
                     expected_arch: Optional[str] = None, strict: bool = True) -> Dict[str, Any]:
    """Load a ``read_checkpoint`` state into whichever of model/optimizer/scaler/schedule are given.

    Raises:
        UserError: ``arch`` differs from ``expected_arch``, or the model does not fit (one line each).
    """
    path = Path(path)
    if expected_arch is not None and state["arch"] != expected_arch:
        raise UserError(f"checkpoint '{path}' was trained with model.arch={state['arch']} but the config says "
                        f"{expected_arch}; set model.arch={state['arch']} or use another out_dir")
    if model is not None:
        try:
            unwrap(model).load_state_dict(state["model"], strict=strict)
        except RuntimeError as exc:  # mismatched keys/shapes: the config changed since the checkpoint
            raise UserError(f"checkpoint '{path}' does not fit the model built from the config "
                            f"({_first_line(exc.__str__().replace(chr(10), ' '))}); resume with the config it "
                            "was saved with (see its 'config' entry) or use another out_dir") from None
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if schedule is not None and state.get("schedule") is not None:
        schedule.load_state_dict(state["schedule"])
    return state


def load_checkpoint(path: PathLike, *, model: Optional[nn.Module] = None,
                    optimizer: Optional[torch.optim.Optimizer] = None, scaler: Any = None, schedule: Any = None,
                    expected_arch: Optional[str] = None, map_location: Union[str, torch.device] = "cpu",
                    strict: bool = True) -> Dict[str, Any]:
    """Read a checkpoint, check it, and load it into whichever of model/optimizer/scaler/schedule are given.

    RNG states are NOT restored here (call ``restore_rng(ckpt["rng"], rank)`` when resuming, after building
    everything that consumes random numbers at construction).

    Raises:
        UserError: missing or unreadable file, not an ffcv-ssl checkpoint, or ``arch`` differs from
            ``expected_arch`` (one line each).
    """
    state = read_checkpoint(path, map_location)
    return apply_checkpoint(state, path, model=model, optimizer=optimizer, scaler=scaler, schedule=schedule,
                            expected_arch=expected_arch, strict=strict)


def checkpoint_path(directory: PathLike, step: int) -> Path:
    """``directory/ckpt_{step:09d}.pt``: names sort by step."""
    return Path(directory) / f"ckpt_{int(step):09d}.pt"


def latest_checkpoint(directory: PathLike) -> Optional[Path]:
    """The checkpoint with the highest step in ``directory`` (None when there is none). Temp files are ignored."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _CKPT_RE.match(p.name)) and p.is_file()]
    return max(found)[1] if found else None


def prune_checkpoints(directory: PathLike, keep: int) -> List[Path]:
    """Delete all but the ``keep`` newest checkpoints of ``directory``; returns the deleted paths."""
    directory = Path(directory)
    found = sorted((int(m.group(1)), p) for p in directory.iterdir() if (m := _CKPT_RE.match(p.name)))
    doomed = [p for _, p in found[:max(0, len(found) - max(1, keep))]]
    for p in doomed:
        p.unlink()
    return doomed


# ----------------------------------------------------------------------------------------------- exported backbone

def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _clean_keys(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _reference_shapes(arch: str) -> Dict[str, tuple]:
    import timm

    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        ref = timm.create_model(arch, pretrained=False, num_classes=0)
    return {k: tuple(v.shape) for k, v in ref.state_dict().items()}


def _compare(state: Mapping[str, torch.Tensor], arch: str, what: str) -> None:
    ref = _reference_shapes(arch)
    missing = sorted(set(ref) - set(state))
    unexpected = sorted(set(state) - set(ref))
    wrong = sorted(k for k in set(ref) & set(state) if tuple(state[k].shape) != ref[k])
    if missing or unexpected or wrong:
        sample = (missing or unexpected or wrong)[0]
        raise UserError(f"{what} does not match timm '{arch}' ({len(missing)} missing, {len(unexpected)} "
                        f"unexpected, {len(wrong)} mis-shaped tensors, e.g. '{sample}'); use the arch it was "
                        "trained with")


def export_backbone(backbone: nn.Module, path: PathLike, arch: str, extra: Optional[Dict[str, Any]] = None) -> Path:
    """Save the backbone's weights alone, loadable by timm (see module docstring); metadata in ``path + '.json'``
    (arch, feature width, the file's sha256, and ``extra``).

    The state dict is checked against ``timm.create_model(arch, num_classes=0)`` first (keys and shapes),
    so a wrong ``arch`` fails here with one line instead of at evaluation time.
    """
    path = Path(path)
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in
             _clean_keys(unwrap(backbone).state_dict()).items()}
    _compare(state, arch, f"the backbone being exported to '{path}'")
    _atomic_save(state, path)
    meta = {"arch": arch, "num_features": int(getattr(unwrap(backbone), "num_features", 0)),
            "format": "timm state_dict, num_classes=0", "sha256": file_sha256(path), **(extra or {})}
    atomic_write_text(_meta_path(path), json.dumps(meta, indent=2, default=str) + "\n")
    return path


def check_backbone_file(path: PathLike, arch: str) -> None:
    """One-line ``UserError`` when ``path`` is missing or holds a backbone of another architecture than ``arch``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"backbone file '{path}' does not exist; export one with export_backbone()")
    meta_file = _meta_path(path)
    if meta_file.is_file():
        recorded = json.loads(meta_file.read_text()).get("arch")
        if recorded and recorded != arch:
            raise UserError(f"backbone '{path}' is a {recorded}, not a {arch}; set the arch to {recorded}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"backbone file '{path}' cannot be read ({_first_line(exc)})") from None
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        raise UserError(f"'{path}' is a training checkpoint, not an exported backbone; use export_backbone()")
    _compare(_clean_keys(state), arch, f"backbone file '{path}'")


def load_backbone(path: PathLike, arch: str) -> nn.Module:
    """``timm.create_model(arch, pretrained=True, num_classes=0, pretrained_cfg_overlay=dict(file=path))``, checked."""
    import timm

    check_backbone_file(path, arch)
    return timm.create_model(arch, pretrained=True, num_classes=0, pretrained_cfg_overlay=dict(file=str(path)))
