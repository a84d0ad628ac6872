"""BYOL (arXiv 2006.07733): online projector + predictor regress an EMA target's projections, symmetrically."""
from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn

from . import BYOLConfig, register_objective
from .base import Objective, ema_update, encode_views, make_target, momentum_at
from .heads import mlp_head
from .losses import byol_regression


@register_objective("byol")
class BYOL(Objective):
    """Online network (backbone, projector, predictor) and a target network (backbone, projector) updated by EMA.

    The loss sums ``2 - 2 cos(q_i, z'_j)`` over ordered pairs of different views, scaled by ``2 / (V (V - 1))``:
    with two views that is BYOL's symmetrised loss ``L + L~`` exactly. ``after_step(progress)`` moves the target
    with momentum ``tau(progress)`` (cosine from ``base_momentum`` to ``final_momentum``).
    """

    min_views = 2

    def __init__(self, backbone: nn.Module, cfg: BYOLConfig, num_classes: int = 0):
        super().__init__(backbone)
        self.cfg = cfg
        self.projector = mlp_head(self.num_features, cfg.proj_hidden_dim, cfg.proj_dim, 2, bn=True)
        self.predictor = mlp_head(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim, 2, bn=True)
        self.target_backbone = make_target(self.backbone)
        self.target_projector = make_target(self.projector)
        self.momentum = momentum_at(0.0, cfg.base_momentum, cfg.final_momentum, cfg.momentum_schedule)

    def forward(self, views: List[torch.Tensor], labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        batch = self._check_views(views)
        n = len(views)
        q = self.predictor(self.projector(encode_views(self.backbone, views))).split(batch)
        with torch.no_grad():
            z = self.target_projector(encode_views(self.target_backbone, views)).split(batch)
        loss = sum(byol_regression(q[i], z[j]) for i in range(n) for j in range(n) if i != j)
        loss = loss * (2.0 / (n * (n - 1)))
        return {"loss": loss}

    def after_step(self, progress: float) -> Dict[str, float]:
        """EMA of the online backbone and projector into the target, with the momentum for ``progress``."""
        self.momentum = momentum_at(progress, self.cfg.base_momentum, self.cfg.final_momentum,
                                    self.cfg.momentum_schedule)
        ema_update(self.target_backbone, self.backbone, self.momentum)
        ema_update(self.target_projector, self.projector, self.momentum)
        return {"momentum": self.momentum}
