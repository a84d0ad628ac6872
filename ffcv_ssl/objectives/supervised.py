"""Supervised baseline: a linear classifier on the pooled features, cross-entropy with optional label smoothing."""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from . import SupervisedConfig, register_objective
from .base import Objective, encode_views


@register_objective("supervised")
class Supervised(Objective):
    """Cross-entropy over the logits of every view (one view is the usual supervised pipeline).

    Label budgets, corrupted betons and label noise are properties of the beton and its labels; the
    objective only needs ``num_classes`` from the training set's manifest.
    """

    min_views = 1

    def __init__(self, backbone: nn.Module, cfg: SupervisedConfig, num_classes: int = 0):
        super().__init__(backbone)
        if num_classes < 2:
            raise UserError(f"objective 'supervised' needs the number of classes of the training set (got "
                            f"{num_classes}); pass num_classes from the beton's manifest")
        self.cfg = cfg
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes)

    def forward(self, views: List[torch.Tensor], labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        self._check_views(views)
        logits = self.head(encode_views(self.backbone, views)).float()
        targets = labels.to(logits.device).long().repeat(len(views))
        loss = F.cross_entropy(logits, targets, label_smoothing=self.cfg.label_smoothing)
        acc1 = (logits.detach().argmax(dim=1) == targets).float().mean()
        return {"loss": loss, "acc1": acc1}
