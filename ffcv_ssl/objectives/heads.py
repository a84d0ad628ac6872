"""Projection and prediction heads: one MLP builder for SimCLR v1/v2, BYOL and MoCo v2."""
from __future__ import annotations

from torch import nn

__all__ = ["mlp_head"]


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, *, bn: bool = True,
             last_bn: bool = False) -> nn.Sequential:
    """An MLP of ``num_layers`` linear layers: ``[Linear -> (BN) -> ReLU] * (num_layers - 1) -> Linear -> (BN)``.

    - SimCLR v2: ``num_layers=3, hidden_dim=in_dim, out_dim=128, bn=True, last_bn=True``. SimCLR v2's last BN
      has a scale but no offset (``center=False``); ours keeps PyTorch's offset, a learned shift of the
      projection that the loss's L2 normalisation only partly absorbs. Kept standard so that SyncBatchNorm
      conversion and checkpoints stay plain.
    - SimCLR v1: ``num_layers=2``. BYOL projector and predictor: ``num_layers=2, hidden_dim=4096, out_dim=256,
      bn=True``. MoCo v2: ``num_layers=2, hidden_dim=2048, out_dim=128, bn=False``.

    Linear layers followed by BN have no bias (the BN offset makes it redundant), as in SimCLR's code.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim))
    return nn.Sequential(*layers)
