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

    Batch norm (``shuffle_bn``, on by default): with BN, a query and its key computed over the same batch
    share its statistics, and the model can pick its positive out of the queue (older keys, other
    statistics) through them instead of through content: MoCo v1 Sec. 3.3 shows the loss then drops while
    the representation stays poor. Shuffle BN computes the keys over a random regrouping of the batch:
    across processes under DDP (``_keys_shuffled_ddp``, the reference's ``_batch_shuffle_ddp`` and
    ``_batch_unshuffle_ddp``), in ``shuffle_bn_groups`` sub-batches in one process (``_keys_shuffled_groups``).
    The permutations come from torch's default CPU generator, which the engine seeds with ``cfg.seed`` and
    checkpoints with every run's RNG state, so a resumed run draws the permutations of the uninterrupted one.
    """

    @property
    def local_batchnorm(self) -> tuple[str, ...]:
        """Submodules that keep per-process BN when ``model.sync_bn`` converts the rest (``maybe_sync_batchnorm``):
        the key encoder under Shuffle BN, whose point is statistics that differ from the query's."""
        return ("target_backbone", "target_projector") if self.cfg.shuffle_bn else ()

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
        world = distributed.get_world_size()
        if self.cfg.shuffle_bn and world == 1 and keys_per_step < 4:
            raise UserError(f"objective.moco.shuffle_bn needs at least 4 key images per step to form 2 BN groups, "
                            f"the batch gives {keys_per_step}; raise data.batch_size or set "
                            "objective.moco.shuffle_bn=false")

    def forward(self, views: List[torch.Tensor], labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        batch = self._check_views(views)
        q = self.projector(encode_views(self.backbone, [views[i] for i, _ in self._pairs])).split(batch)
        with torch.no_grad():
            k = self._keys([views[j] for _, j in self._pairs])
        results = [moco_infonce(qi, ki, self.queue, self.cfg.temperature) for qi, ki in zip(q, k.split(batch))]
        if self.training:
            self._pending.append(distributed.all_gather_no_grad(k))
        loss = sum(r[0] for r in results) / len(results)
        acc = sum(r[1] for r in results) / len(results)
        return {"loss": loss, "contrast_acc": acc}

    # ------------------------------------------------------------------------------------------------ keys
    def _key_encoder(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm keys of ``x``, one BN group (train mode: BN statistics of ``x`` alone)."""
        return F.normalize(self.target_projector(self.target_backbone(x)).float(), dim=1)

    def _keys(self, key_views: List[torch.Tensor]) -> torch.Tensor:
        """Keys of every key view, view-major as ``encode_views`` stacks them, with Shuffle BN if enabled."""
        if not self.cfg.shuffle_bn:
            return F.normalize(self.target_projector(encode_views(self.target_backbone, key_views)).float(), dim=1)
        if any(v.shape != key_views[0].shape for v in key_views):    # views of other sizes: one group each
            return torch.cat([self._keys_shuffled(v) for v in key_views])
        return self._keys_shuffled(key_views[0] if len(key_views) == 1 else torch.cat(key_views))

    def _keys_shuffled(self, x: torch.Tensor) -> torch.Tensor:
        if distributed.get_world_size() > 1:
            return self._keys_shuffled_ddp(x)
        return self._keys_shuffled_groups(x)

    def _keys_shuffled_groups(self, x: torch.Tensor) -> torch.Tensor:
        """One process: permute the key batch, encode it in ``shuffle_bn_groups`` BN groups, unpermute.

        Each group's BN statistics come from a random subset of the batch (not the query's whole batch),
        as each GPU's do under the reference's shuffle. At most ``len(x) // 2`` groups (BN needs 2 samples).
        """
        n = x.shape[0]
        groups = min(self.cfg.shuffle_bn_groups, n // 2)
        perm = torch.randperm(n).to(x.device)          # default generator: seeded and checkpointed by the engine
        if groups <= 1:
            return self._key_encoder(x)
        shuffled = _same_format(x[perm], x)
        keys = torch.cat([self._key_encoder(part) for part in shuffled.tensor_split(groups)])
        return keys[torch.argsort(perm)]

    def _keys_shuffled_ddp(self, x: torch.Tensor) -> torch.Tensor:
        """DDP: gather every process's key images, shuffle them with rank 0's permutation, encode this
        process's shard of the shuffled batch (per-process BN), gather the keys and return this process's
        own keys in their original order (MoCo's ``_batch_shuffle_ddp`` / ``_batch_unshuffle_ddp``)."""
        import torch.distributed as dist

        world, rank, local = distributed.get_world_size(), distributed.get_rank(), x.shape[0]
        x_all = distributed.all_gather_no_grad(x.contiguous())
        perm = torch.randperm(x_all.shape[0]).to(x.device)   # drawn on every rank (same RNG use), rank 0's wins
        dist.broadcast(perm, src=0)
        mine = perm.view(world, local)[rank]
        k_all = distributed.all_gather_no_grad(self._key_encoder(_same_format(x_all[mine], x)))
        return k_all[torch.argsort(perm)].view(world, local, -1)[rank]

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


def _same_format(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``y`` in ``like``'s memory format (indexing returns contiguous NCHW; the model may run channels_last)."""
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
        return y.contiguous(memory_format=torch.channels_last)
    return y
