"""Optimisers (LARS, SGD, AdamW) with SimCLR v2's parameter groups, learning-rate scaling and warm-up + cosine.

Defaults are SimCLR v2's reference ones, which Cole et al. follow: LARS, momentum 0.9, lr 0.3 x batch / 256,
weight decay 1e-6 with neither weight decay nor LARS adaptation on batch-norm and bias parameters (``ndim <= 1``,
DINO's rule: it also catches the BN inside ResNet ``downsample`` blocks that a ``'bn' in name`` test misses),
10 warm-up epochs, then cosine decay.

LARS is timm's ``Lars`` (the NVIDIA apex LARC form). Checked in timm 1.0.31 ``timm/optim/lars.py``: it applies
the trust ratio ``eta * ||w|| / (||g|| + wd * ||w|| + eps)`` to ``g + wd * w`` only when the group's
``weight_decay != 0`` or ``always_adapt`` is set. timm's own ``create_optimizer_v2(opt='lars',
filter_bias_and_bn=True)`` therefore excludes ``ndim <= 1`` parameters from the trust ratio only as a side
effect of their zero weight decay, and with ``weight_decay=0`` it silently turns LARS off for every weight.
So we build the two groups ourselves: weights with ``always_adapt=True`` (adapted whatever the weight decay),
BN/bias with ``weight_decay=0, always_adapt=False`` (plain momentum SGD), and pass them to timm's class; no
subclass is needed. Differences from SimCLR's TF LARS, kept on purpose: the trust ratio's denominator is
``||g|| + wd ||w||`` rather than ``||g + wd w||`` (the apex/timm form: timm's class is used as it is), and the
momentum buffer accumulates the adapted gradient before the learning rate is applied (PyTorch SGD style),
whereas TF accumulates ``lr * g``; the two agree while the learning rate is constant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Tuple

from .errors import ConfigError
from .registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["OptimConfig", "OPTIMIZERS", "register_optimizer", "scaled_lr", "param_groups", "build_optimizer",
           "lr_schedule", "WarmupCosine"]


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule.

    Attributes:
        name: 'lars' (SimCLR, BYOL), 'sgd' (MoCo v2, supervised) or 'adamw'.
        lr: base learning rate. With ``lr_scaling='linear'`` the rate is ``lr * batch / 256`` (0.3 for
            SimCLR v2, 0.2 for BYOL, 0.03 for MoCo v2, 0.1 for supervised SGD); with ``'sqrt'`` it is
            ``lr * sqrt(batch)`` as in SimCLR's code (use lr=0.075 then, SimCLR's value for small batches).
        lr_scaling: 'linear', 'sqrt' or 'none' (use ``lr`` as is).
        momentum: SGD/LARS momentum.
        nesterov: Nesterov momentum (SGD/LARS).
        weight_decay: L2 penalty on weights (``ndim > 1``); never on BN and bias.
        trust_coefficient: LARS eta (0.001).
        betas: AdamW betas.
        eps: AdamW epsilon.
        epochs: training epochs (the schedule's length).
        warmup_epochs: linear warm-up epochs (may be fractional).
        min_lr: learning rate at the end of the cosine, as an absolute value.
    """

    name: str = "lars"
    lr: float = 0.3
    lr_scaling: str = "linear"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-6
    trust_coefficient: float = 0.001
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    epochs: int = 100
    warmup_epochs: float = 10.0
    min_lr: float = 0.0

    def validate(self) -> None:
        OPTIMIZERS.check(self.name)
        if self.lr_scaling not in _SCALINGS:
            raise ConfigError(f"config key 'optim.lr_scaling' must be one of {', '.join(_SCALINGS)}, "
                              f"got {self.lr_scaling!r}")
        if self.lr <= 0 or self.weight_decay < 0 or self.min_lr < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("optim: need lr > 0, weight_decay >= 0, min_lr >= 0 and 0 <= momentum < 1 "
                              f"(got lr={self.lr}, weight_decay={self.weight_decay}, min_lr={self.min_lr}, "
                              f"momentum={self.momentum})")
        if self.epochs < 1 or not 0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(f"optim: need epochs >= 1 and 0 <= warmup_epochs <= epochs "
                              f"(got epochs={self.epochs}, warmup_epochs={self.warmup_epochs})")


_SCALINGS: Dict[str, Callable[[float, int], float]] = {
    "linear": lambda lr, batch: lr * batch / 256.0,
    "sqrt": lambda lr, batch: lr * math.sqrt(batch),
    "none": lambda lr, batch: lr,
}


def scaled_lr(cfg: OptimConfig, batch_size: int) -> float:
    """Peak learning rate for a global batch of ``batch_size`` images (SimCLR's ``learning_rate_scaling``)."""
    return _SCALINGS[cfg.lr_scaling](cfg.lr, batch_size)


def param_groups(model: "nn.Module", weight_decay: float) -> List[Dict[str, Any]]:
    """Two groups: weights (``ndim > 1``) with weight decay and LARS adaptation, BN/bias without either.

    Frozen parameters (momentum targets: ``requires_grad=False``) are left out. Shared parameters appear once.
    Empty groups are dropped.
    """
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "always_adapt": True},
              {"params": no_decay, "weight_decay": 0.0, "always_adapt": False}]
    return [g for g in groups if g["params"]]


OptimizerBuilder = Callable[[List[Dict[str, Any]], OptimConfig, float], "torch.optim.Optimizer"]
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer", error=ConfigError, key="optim.name")


def register_optimizer(name: str) -> Callable[[OptimizerBuilder], OptimizerBuilder]:
    """Decorator: ``@register_optimizer("lars")`` on a ``(groups, cfg, lr) -> Optimizer`` function."""
    return OPTIMIZERS.register(name)


def _strip_lars_keys(groups: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{k: v for k, v in g.items() if k != "always_adapt"} for g in groups]


@register_optimizer("lars")
def _lars(groups: List[Dict[str, Any]], cfg: OptimConfig, lr: float) -> "torch.optim.Optimizer":
    from timm.optim import Lars

    return Lars(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, trust_coeff=cfg.trust_coefficient)


@register_optimizer("sgd")
def _sgd(groups: List[Dict[str, Any]], cfg: OptimConfig, lr: float) -> "torch.optim.Optimizer":
    import torch

    return torch.optim.SGD(_strip_lars_keys(groups), lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


@register_optimizer("adamw")
def _adamw(groups: List[Dict[str, Any]], cfg: OptimConfig, lr: float) -> "torch.optim.Optimizer":
    import torch

    return torch.optim.AdamW(_strip_lars_keys(groups), lr=lr, betas=tuple(cfg.betas), eps=cfg.eps)


def build_optimizer(model: "nn.Module", cfg: OptimConfig, batch_size: int) -> "torch.optim.Optimizer":
    """The optimiser for every trainable parameter of ``model`` (the objective: backbone + heads).

    Args:
        model: the objective, before or after DDP wrapping (parameters are the same objects).
        cfg: optimiser config.
        batch_size: the GLOBAL batch (all processes), which sets the peak learning rate.

    Every group starts at the peak rate; ``WarmupCosine`` overwrites it before each step.
    """
    cfg.validate()
    groups = param_groups(model, cfg.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return OPTIMIZERS.lookup(cfg.name)(groups, cfg, scaled_lr(cfg, batch_size))


def lr_schedule(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, then cosine to ``min_lr``.

    SimCLR's schedule: ``base_lr * step / warmup_steps`` during warm-up (so step 0 uses 0 and step
    ``warmup_steps`` the peak), then ``min_lr + (base_lr - min_lr) * (1 + cos(pi * t)) / 2`` with
    ``t = (step - warmup_steps) / (total_steps - warmup_steps)``, reaching ``min_lr`` at ``step == total_steps``.
    """
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


class WarmupCosine:
    """``lr_schedule`` bound to an optimizer, with the step position in a state_dict for resuming.

    Call ``step()`` once per iteration, before ``optimizer.step()``: it sets the rate of every parameter group
    for the current step and advances. ``state_dict()`` holds the position; after ``load_state_dict`` the next
    ``step()`` continues exactly where the interrupted run stopped.
    """

    def __init__(self, optimizer: "torch.optim.Optimizer", total_steps: int, warmup_steps: int, base_lr: float,
                 min_lr: float = 0.0):
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, got "
                             f"{total_steps}, {warmup_steps}")
        self.optimizer = optimizer
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.base_lr, self.min_lr = float(base_lr), float(min_lr)
        self.position = 0
        self.last_lr = lr_schedule(0, self.total_steps, self.warmup_steps, self.base_lr, self.min_lr)

    @classmethod
    def from_config(cls, optimizer: "torch.optim.Optimizer", cfg: OptimConfig, steps_per_epoch: int,
                    batch_size: int) -> "WarmupCosine":
        """Schedule for ``cfg.epochs`` epochs of ``steps_per_epoch`` steps at the scaled peak rate."""
        return cls(optimizer, total_steps=cfg.epochs * steps_per_epoch,
                   warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
                   base_lr=scaled_lr(cfg, batch_size), min_lr=cfg.min_lr)

    @property
    def progress(self) -> float:
        """Fraction of the schedule done (steps taken / total), what ``objective.after_step`` expects."""
        return min(1.0, self.position / self.total_steps)

    def step(self) -> float:
        """Set the learning rate of the current step on every group, advance, and return that rate."""
        lr = lr_schedule(self.position, self.total_steps, self.warmup_steps, self.base_lr, self.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.position += 1
        self.last_lr = lr
        return lr

    def state_dict(self) -> Dict[str, Any]:
        return {"position": self.position, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "base_lr": self.base_lr, "min_lr": self.min_lr, "last_lr": self.last_lr}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the position. The shape of the schedule comes from the (current) config, not the checkpoint."""
        self.position = int(state["position"])
        self.last_lr = float(state.get("last_lr", self.last_lr))
