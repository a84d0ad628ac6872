"""MoCo v2 (arXiv 2003.04297; v1: arXiv 1911.05722): momentum key encoder and a queue of negatives."""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..errors import UserError
from . import MoCoConfig, register_objective
from .base import Objective, ema_update, encode_views, make_target, momentum_at
from .heads import mlp_head
from .losses import moco_infonce


@register_objective("moco")
class MoCo(Objective):
    """Queries from the online encoder, keys from its EMA copy, negatives from a FIFO queue of past keys.

    MoCo v2 is asymmetric: queries from view 0, keys from view 1. ``symmetric=True`` adds the swapped pair
    (MoCo v3 style) and averages the two losses. The keys of a step are gathered from every process and
    kept aside by ``forward``; ``after_step`` first moves the key encoder (EMA), then enqueues them, so the
    loss of a step always sees the queue as it was before that step, as in the reference code, and a step
    that is skipped (e.g. a non-finite loss) leaves the queue untouched.

    Batch norm: the reference uses "shuffle BN" on 8 GPUs to stop the key/query BN statistics from leaking
    the positive; here global SyncBatchNorm (multi-GPU) or per-process BN is used as in MoCo v3. With small
    per-process batches and per-process BN the contrastive accuracy can look optimistic.
    """

    min_views = 2
    max_views = 2

    def __init__(self, backbone: nn.Module, cfg: MoCoConfig, num_classes: int = 0):
        super().__init__(backbone)
        self.cfg = cfg
        hidden = cfg.proj_hidden_dim or self.num_features
        self.projector = mlp_head(self.num_features, hidden, cfg.proj_dim, cfg.proj_layers, bn=cfg.proj_bn)
        self.target_backbone = make_target(self.backbone)
        self.target_projector = make_target(self.projector)
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, cfg.proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.momentum = momentum_at(0.0, cfg.base_momentum, cfg.final_momentum, cfg.momentum_schedule)
        self._pending: List[torch.Tensor] = []

    @property
    def _pairs(self) -> List[tuple[int, int]]:
        return [(0, 1), (1, 0)] if self.cfg.symmetric else [(0, 1)]

    def check_setup(self, num_views: int, global_batch: int) -> None:
        super().check_setup(num_views, global_batch)
        keys_per_step = global_batch * len(self._pairs)
        if keys_per_step > self.cfg.queue_size:
            raise UserError(f"objective.moco.queue_size={self.cfg.queue_size} is smaller than the {keys_per_step} "
                            "keys enqueued per step (global batch x key views); raise queue_size")

    def forward(self, views: List[torch.Tensor], labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        batch = self._check_views(views)
        q = self.projector(encode_views(self.backbone, [views[i] for i, _ in self._pairs])).split(batch)
        with torch.no_grad():
            k = self.target_projector(encode_views(self.target_backbone, [views[j] for _, j in self._pairs]))
            k = F.normalize(k.float(), dim=1)
        results = [moco_infonce(qi, ki, self.queue, self.cfg.temperature) for qi, ki in zip(q, k.split(batch))]
        if self.training:
            self._pending.append(distributed.all_gather_no_grad(k))
        loss = sum(r[0] for r in results) / len(results)
        acc = sum(r[1] for r in results) / len(results)
        return {"loss": loss, "contrast_acc": acc}

    def after_step(self, progress: float) -> Dict[str, float]:
        """EMA of the key encoder with the momentum for ``progress``, then enqueue the keys of the step."""
        self.momentum = momentum_at(progress, self.cfg.base_momentum, self.cfg.final_momentum,
                                    self.cfg.momentum_schedule)
        ema_update(self.target_backbone, self.backbone, self.momentum)
        ema_update(self.target_projector, self.projector, self.momentum)
        for keys in self._pending:
            self.enqueue(keys)
        self._pending.clear()
        return {"momentum": self.momentum}

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (n, D) at the queue pointer, wrapping around the end, and advance the pointer by n.

        Index arithmetic stays on the device, so no host synchronisation happens per step.
        """
        size = self.queue.shape[0]
        n = keys.shape[0]
        if n > size:
            raise UserError(f"objective.moco.queue_size={size} is smaller than the {n} keys of one step; "
                            "raise queue_size")
        index = (self.queue_ptr + torch.arange(n, device=self.queue.device)) % size
        self.queue.index_copy_(0, index, keys.to(self.queue.dtype))
        self.queue_ptr.copy_((self.queue_ptr + n) % size)
