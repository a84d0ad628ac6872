"""SimCLR (arXiv 2002.05709; v2 head: arXiv 2006.10029): NT-Xent over all views with negatives from all processes."""
from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn

from .. import distributed
from . import SimCLRConfig, register_objective
from .base import Objective, encode_views
from .heads import mlp_head
from .losses import nt_xent


@register_objective("simclr")
class SimCLR(Objective):
    """Backbone + projection head + NT-Xent; ``positives='label'`` turns it into supervised contrastive (SupCon).

    Under DDP the projections of every process are gathered with gradients kept, and this process's anchors
    are scored against all of them, so the loss is that of the global batch (SimCLR's TPU implementation).
    Sample ids are offset by ``rank * B`` so that positives never match across processes.
    """

    min_views = 2

    def __init__(self, backbone: nn.Module, cfg: SimCLRConfig, num_classes: int = 0):
        super().__init__(backbone)
        self.cfg = cfg
        hidden = cfg.proj_hidden_dim or self.num_features
        self.projector = mlp_head(self.num_features, hidden, cfg.proj_dim, cfg.proj_layers, bn=cfg.proj_bn,
                                  last_bn=cfg.proj_last_bn)

    def forward(self, views: List[torch.Tensor], labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        batch = self._check_views(views)
        z = self.projector(encode_views(self.backbone, views))
        if self.cfg.positives == "label":
            ids = labels.to(z.device).repeat(len(views))
        else:
            rank = distributed.get_rank() if self.cfg.gather_negatives else 0
            ids = (torch.arange(batch, device=z.device) + rank * batch).repeat(len(views))
        if self.cfg.gather_negatives and distributed.get_world_size() > 1:
            keys, key_ids = distributed.all_gather_with_grad(z), distributed.all_gather_no_grad(ids)
            offset = distributed.get_rank() * len(z)
        else:
            keys, key_ids, offset = z, ids, 0
        loss, acc = nt_xent(z, ids, self.cfg.temperature, keys, key_ids, q_offset=offset)
        return {"loss": loss, "contrast_acc": acc}
