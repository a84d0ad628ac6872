"""What every objective shares: view encoding, the view-count contract, momentum targets (BYOL, MoCo)."""
from __future__ import annotations

import copy
import math
from typing import Dict, List, Sequence

import torch
from torch import nn

from ..errors import UserError

__all__ = ["Objective", "encode_views", "momentum_at", "make_target", "ema_update"]


def encode_views(encoder: nn.Module, views: Sequence[torch.Tensor]) -> torch.Tensor:
    """Features of every view, stacked view-major: rows ``v * B + b`` belong to view ``v``, sample ``b``.

    Views of equal shape go through the encoder in ONE forward pass, as SimCLR does (its TF code concatenates
    the views along the batch): batch-norm statistics are then taken over all views of the batch, and the
    network runs on one larger batch. Views of other sizes (multi-crop) form their own forward passes.
    """
    outputs: List[torch.Tensor] = []
    start = 0
    while start < len(views):
        end = start + 1
        while end < len(views) and views[end].shape == views[start].shape:
            end += 1
        group = views[start] if end == start + 1 else torch.cat(list(views[start:end]))
        outputs.append(encoder(group))
        start = end
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def momentum_at(progress: float, base: float, final: float, schedule: str) -> float:
    """EMA momentum after a fraction ``progress`` of training.

    'cosine' is BYOL's schedule, tau = final - (final - base) * (cos(pi * progress) + 1) / 2, which equals
    BYOL's ``1 - (1 - tau_base) (cos(pi k / K) + 1) / 2`` for final = 1; 'constant' returns ``base`` (MoCo v2).
    """
    p = min(max(float(progress), 0.0), 1.0)
    if schedule == "constant":
        return float(base)
    if schedule == "cosine":
        return float(final - (final - base) * (math.cos(math.pi * p) + 1.0) / 2.0)
    raise ValueError(f"momentum schedule must be 'cosine' or 'constant', got {schedule!r}")


def make_target(online: nn.Module) -> nn.Module:
    """A frozen copy of ``online`` to be updated only by ``ema_update`` (requires_grad=False everywhere)."""
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` for every parameter, in place.

    Only parameters are averaged (BYOL, MoCo): the target's batch-norm running statistics follow its own
    forward passes in train mode, as in both reference implementations.
    """
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    if len(t_params) != len(o_params):
        raise RuntimeError("target and online networks have different parameter lists; rebuild the objective")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - momentum)


class Objective(nn.Module):
    """Base class of registered objectives: holds ``backbone`` and defines the loop-facing contract.

    Subclasses implement ``forward(views, labels) -> dict`` (with a ``loss`` entry) and may override
    ``after_step``. ``min_views``/``max_views`` say how many views the objective accepts, so that the engine
    can check the data config with ``check_num_views`` before the first batch is loaded.
    """

    min_views: int = 1
    max_views: int = 1_000_000

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.num_features = int(getattr(backbone, "num_features"))

    @classmethod
    def check_num_views(cls, num_views: int) -> None:
        """Raise a one-line ``UserError`` when the loader would yield a number of views this objective rejects."""
        if not cls.min_views <= num_views <= cls.max_views:
            wanted = (f"exactly {cls.min_views}" if cls.min_views == cls.max_views
                      else f"at least {cls.min_views}" if cls.max_views >= 1_000_000
                      else f"{cls.min_views} to {cls.max_views}")
            raise UserError(f"objective {cls.__name__} needs {wanted} views per image, the data config gives "
                            f"{num_views}; change the views of the data config")

    def check_setup(self, num_views: int, global_batch: int) -> None:
        """Fail before training, with one line, when the data config cannot feed this objective.

        Args:
            num_views: views per image that the loader yields.
            global_batch: images per optimizer step over all processes.
        """
        self.check_num_views(num_views)

    def _check_views(self, views: Sequence[torch.Tensor]) -> int:
        self.check_num_views(len(views))
        batch = views[0].shape[0]
        if any(v.shape[0] != batch for v in views):
            raise ValueError(f"all views must have the same batch size, got {[v.shape[0] for v in views]}")
        return batch

    def after_step(self, progress: float) -> Dict[str, float]:
        """Bookkeeping after ``optimizer.step()``; ``progress`` = optimizer steps done / total steps, in [0, 1].

        Returns loggable scalars (e.g. the EMA momentum used). The default does nothing.
        """
        return {}
