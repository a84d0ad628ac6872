"""What a resume may change: the settings that define a run are compared with the checkpoint's.

A run is defined by its data, model, objective, optimiser/schedule and seed. Resuming a checkpoint under
other values of those would silently produce weights that no config describes (a killed run resumed with
another beton and batch size used to exit 0, its metadata claiming the new beton for every step). So a
resume compares them and refuses with the list of differences, unless the user asks for
``resume_with_changes=true``; then every change opens a new *segment* (a step range with its settings),
carried in each checkpoint and written to ``provenance.json``, the backbone's metadata and summary.json.

Operational settings (where output goes, how many loader workers, logging and checkpoint cadence, when to
stop, the evaluation after training) may change freely: they do not change the weights.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import UserError

#: Dotted keys (or prefixes) of TrainConfig that do not define the run; everything else is compared.
OPERATIONAL = ("out_dir", "device", "checkpoint_every", "keep_checkpoints", "log_every", "max_steps",
               "tensorboard", "resume_with_changes", "data.num_workers", "data.os_cache", "data.batches_ahead",
               "data.val", "data.eval_size", "data.eval_center_ratio", "model.compile", "model.compile_mode",
               "model.channels_last")
PROVENANCE = "provenance.json"
_TRAIN_SHA = "data.train.sha256"      # not a config key: the training beton's content, from its manifest

Change = Tuple[str, Any, Any]


def _operational(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in OPERATIONAL)


def _flatten(value: Any, prefix: str = "") -> Dict[str, Any]:
    """Nested dicts and lists of dicts -> ``{"data.views.0.size": 32, ...}`` (lists of scalars stay values)."""
    if isinstance(value, dict):
        out: Dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}{i}."))
        out[prefix + "len"] = len(value)
        return out
    return {prefix[:-1]: value}


def run_settings(plain_config: Dict[str, Any], train_sha256: str = "") -> Dict[str, Any]:
    """The settings that define a run, flat (``data.views.0.size``), from a config as plain dicts."""
    flat = {k: v for k, v in _flatten(plain_config).items() if not _operational(k)}
    if train_sha256:
        flat[_TRAIN_SHA] = train_sha256
    return flat


def differences(saved: Dict[str, Any], current: Dict[str, Any]) -> List[Change]:
    """``(key, saved value, current value)`` for every run-defining setting that differs.

    A key that the checkpoint does not have (a setting added by a newer version of the tool) or that the
    current config no longer has is not a difference: nothing says it was set otherwise.
    """
    return [(k, saved[k], current[k]) for k in sorted(set(saved) & set(current)) if saved[k] != current[k]]


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit - 3] + "..."


def describe(changes: List[Change]) -> str:
    return ", ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, a, b in changes)


def check_resume(state: Dict[str, Any], checkpoint: Path, settings: Dict[str, Any],
                 allow_changes: bool) -> Tuple[List[Dict[str, Any]], List[Change]]:
    """Compare the checkpoint's run settings with ``settings``; returns the segments to continue with.

    Raises:
        UserError: the settings differ and ``allow_changes`` is false (one line listing every difference).
    """
    extra = state.get("extra") or {}
    segments = [dict(s) for s in extra.get("segments") or []]
    saved_cfg = state.get("config")
    saved = run_settings(saved_cfg, extra.get("train_sha256", "")) if saved_cfg else {}
    if not segments:                  # a checkpoint from before segments were recorded: one open segment
        segments = [{"start_step": 0, "end_step": None, "settings": saved, "changes": {}}]
    changes = differences(saved, settings)
    if not changes:
        return segments, []
    if not allow_changes:
        raise UserError(f"{checkpoint} was trained with other settings than this config ({describe(changes)}); "
                        "resume with the original settings, or choose another out_dir for a new run, or add "
                        "resume_with_changes=true to continue with these changes (recorded in provenance.json)")
    step = int(state.get("step", 0))
    segments[-1]["end_step"] = step
    segments.append({"start_step": step, "end_step": None, "settings": settings,
                     "changes": {k: [a, b] for k, a, b in changes}})
    return segments, changes


def new_segments(settings: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The provenance of a run that starts from step 0: one open segment."""
    return [{"start_step": 0, "end_step": None, "settings": settings, "changes": {}}]


def summarize(segments: List[Dict[str, Any]], step: Optional[int] = None) -> List[Dict[str, Any]]:
    """Segments without their full settings (for metadata): step range, training beton, batch, changes."""
    out = []
    for i, s in enumerate(segments):
        end = s.get("end_step")
        if end is None and i == len(segments) - 1:
            end = step
        settings = s.get("settings", {})
        out.append({"steps": [s.get("start_step", 0), end], "train_beton": settings.get("data.train"),
                    "train_sha256": settings.get(_TRAIN_SHA, ""), "batch_size": settings.get("data.batch_size"),
                    "changes": s.get("changes", {})})
    return out


def rescale_position(batch_in_epoch: int, old_steps_per_epoch: Optional[int], steps_per_epoch: int) -> int:
    """Where to continue inside an epoch after the number of steps per epoch changed (another batch or beton):
    the same fraction of the epoch, so no sample is seen twice in that epoch more than the change forces."""
    if not old_steps_per_epoch or old_steps_per_epoch == steps_per_epoch or batch_in_epoch == 0:
        return batch_in_epoch
    return int(round(batch_in_epoch * steps_per_epoch / old_steps_per_epoch))
