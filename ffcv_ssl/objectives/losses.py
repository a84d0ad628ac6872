"""Pure loss functions of the objectives (SimCLR NT-Xent, BYOL regression, MoCo InfoNCE), always in float32.

No process-group calls here: callers gather across processes and pass ids/offsets, so every loss is
testable on CPU against a brute-force loop. Under bf16 autocast the logits would lose the precision that a
temperature of 0.1 amplifies, so each loss turns autocast off and works on float32 copies.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ["nt_xent", "byol_regression", "moco_infonce"]


def _no_autocast(t: torch.Tensor) -> torch.autocast:
    return torch.autocast(device_type=t.device.type, enabled=False)


def nt_xent(q: torch.Tensor, q_ids: torch.Tensor, temperature: float, k: Optional[torch.Tensor] = None,
            k_ids: Optional[torch.Tensor] = None, q_offset: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent (SimCLR, arXiv 2002.05709, eq. 1) generalised to many views and to shared labels (SupCon L_out).

    Each anchor ``q[i]`` is scored against every key except itself; keys with the same id are positives.
    The loss of an anchor is the mean over its positives ``p`` of ``-log softmax(q_i . k / tau)[p]``, and the
    loss is the mean over anchors. With two views and instance ids this is SimCLR's loss exactly.

    Args:
        q: (N, D) anchors (this process's projections, view-major).
        q_ids: (N,) ids of the anchors: sample ids (instance positives) or class labels.
        temperature: tau.
        k: (M, D) keys; defaults to ``q``. Under DDP, the projections of all processes in rank order.
        k_ids: (M,) ids of the keys; defaults to ``q_ids``.
        q_offset: row of ``k`` that holds ``q[0]`` (``rank * N`` for gathered keys), used to mask self-pairs.

    Returns:
        (loss, accuracy): accuracy is the fraction of anchors whose most similar non-self key is a positive.
    """
    if k is None:
        k, k_ids = q, q_ids
    if k_ids is None:
        raise ValueError("k_ids is required when k is given")
    with _no_autocast(q):
        qn = F.normalize(q.float(), dim=1)
        kn = qn if k is q else F.normalize(k.float(), dim=1)
        logits = qn @ kn.T / temperature
        rows = torch.arange(len(q), device=q.device)
        self_mask = torch.zeros_like(logits, dtype=torch.bool)
        self_mask[rows, rows + q_offset] = True
        log_prob = logits.masked_fill(self_mask, float("-inf")).log_softmax(dim=1)
        pos = (q_ids[:, None] == k_ids[None, :]) & ~self_mask
        n_pos = pos.sum(1)
        if bool((n_pos == 0).any()):
            raise ValueError("an anchor has no positive key: NT-Xent needs >= 2 views (or shared labels)")
        loss = -(log_prob.masked_fill(~pos, 0.0).sum(1) / n_pos).mean()
        with torch.no_grad():
            best = logits.masked_fill(self_mask, float("-inf")).argmax(dim=1)
            acc = pos[rows, best].float().mean()
    return loss, acc


def byol_regression(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's loss (arXiv 2006.07733, eq. 2): batch mean of ``2 - 2 cos(p, z)``; ``z`` is not differentiated."""
    with _no_autocast(p):
        return (2.0 - 2.0 * F.cosine_similarity(p.float(), z.detach().float(), dim=1)).mean()


def moco_infonce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor,
                 temperature: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """MoCo's InfoNCE (arXiv 1911.05722, eq. 1): the positive ``k[i]`` against the queued negatives.

    Args:
        q: (N, D) queries (normalised here).
        k: (N, D) keys from the momentum encoder, one per query (normalised here; not differentiated).
        queue: (K, D) normalised negative keys.
        temperature: tau.

    Returns:
        (loss, accuracy): accuracy is the fraction of queries whose positive scores above every negative.
    """
    with _no_autocast(q):
        qn = F.normalize(q.float(), dim=1)
        kn = F.normalize(k.detach().float(), dim=1)
        l_pos = (qn * kn).sum(dim=1, keepdim=True)
        l_neg = qn @ queue.detach().float().T
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature
        labels = torch.zeros(len(q), dtype=torch.long, device=q.device)
        loss = F.cross_entropy(logits, labels)
        acc = (logits.detach().argmax(dim=1) == 0).float().mean()
    return loss, acc
