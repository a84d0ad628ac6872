"""Backbones from timm by name, without classifier (pooled features), and their placement for training.

Heads belong to the objectives (``ffcv_ssl.objectives``), never to the backbone: the backbone that is
exported after pretraining is exactly ``timm.create_model(arch, num_classes=0)``.
torch and timm are imported inside the functions, so that ``ModelConfig`` loads with the config in
well under a second (``ffcv-ssl --help``, ``show-config``).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Tuple

from .errors import ConfigError, UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["ModelConfig", "check_arch", "build_backbone", "maybe_sync_batchnorm"]


@dataclass
class ModelConfig:
    """The backbone and how it runs.

    Attributes:
        arch: any timm model name (``timm.list_models()``); the paper uses 'resnet50', tests 'resnet18'.
        channels_last: NHWC memory format: faster convolutions with bf16/fp16 on tensor-core GPUs.
        sync_bn: batch-norm statistics over the global batch under DDP (SimCLR v2's global BN). Needs CUDA;
            on CPU (gloo) every process normalises with its own batch.
        compile: ``torch.compile`` the backbone (in place, via ``nn.Module.compile``, so state_dict keys and
            checkpoints do not change).
        compile_mode: the ``mode`` passed to torch.compile ('default', 'reduce-overhead', 'max-autotune').
        drop_path_rate: stochastic depth rate passed to timm (0 for the paper's ResNets).
    """

    arch: str = "resnet50"
    channels_last: bool = True
    sync_bn: bool = True
    compile: bool = False
    compile_mode: str = "default"
    drop_path_rate: float = 0.0

    def validate(self) -> None:
        if not self.arch:
            raise ConfigError("config key 'model.arch' is empty; set a timm model name such as resnet50")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"config key 'model.drop_path_rate' must be in [0, 1), got {self.drop_path_rate}")


def check_arch(arch: str) -> None:
    """Raise a one-line ``UserError`` (with the closest timm names) when timm has no model called ``arch``.

    Call it before any data is loaded: importing timm takes a few seconds, a typo should not take longer.
    """
    import timm

    from . import small_resnets  # noqa: F401  (registers the narrow ResNets in timm)

    if timm.is_model(arch):
        return
    close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; see timm.list_models()"
    raise UserError(f"unknown backbone '{arch}' (model.arch): timm has no model of that name{hint}")


def build_backbone(cfg: ModelConfig) -> "nn.Module":
    """A randomly initialised timm model with no classifier: ``forward(x)`` returns (B, ``num_features``) features.

    Weights are never downloaded (``pretrained=False``). Timm ResNets zero-initialise the last BN of each
    residual block (``zero_init_last``), as SimCLR's ResNet does. With ``channels_last`` the weights are
    converted to NHWC; inputs should be converted the same way by the caller.
    """
    import timm
    import torch

    check_arch(cfg.arch)
    kwargs = {"drop_path_rate": cfg.drop_path_rate} if cfg.drop_path_rate else {}
    model = timm.create_model(cfg.arch, pretrained=False, num_classes=0, **kwargs)
    if not isinstance(getattr(model, "num_features", None), int) or model.num_features < 1:
        raise UserError(f"timm model '{cfg.arch}' does not report its feature width (num_features); "
                        "choose a classification backbone")
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def maybe_sync_batchnorm(module: "nn.Module", enabled: bool, device: "torch.device | str",
                         world_size: int) -> Tuple["nn.Module", str]:
    """Convert every BatchNorm of ``module`` (backbone, heads and momentum targets) to SyncBatchNorm if useful.

    Converts only when ``enabled``, ``world_size > 1`` and the device is CUDA: PyTorch's SyncBatchNorm raises
    on CPU tensors, so CPU (gloo) runs keep per-process BN. Call it after moving the objective to its device
    and before wrapping it in DDP and building the optimizer (parameters are reused, not copied).
    Children named in ``module.local_batchnorm`` keep per-process BN (MoCo's Shuffle-BN key encoder: global
    statistics would again be shared by queries and keys).

    Returns:
        The (possibly new) module and a one-line note saying what was done, for the run log.
    """
    import torch
    from timm.layers import convert_sync_batchnorm  # also converts timm's BatchNormAct2d, keeping its activation

    device = torch.device(device)
    if not enabled:
        return module, "per-process batch norm (model.sync_bn=false)"
    if world_size <= 1:
        return module, "batch norm over the whole batch (single process)"
    if device.type != "cuda":
        return module, f"per-process batch norm: SyncBatchNorm needs CUDA, this run uses {device.type}"
    keep = tuple(getattr(module, "local_batchnorm", ()))   # e.g. MoCo's Shuffle-BN key encoder
    if keep:
        for name, child in list(module.named_children()):
            if name not in keep:
                setattr(module, name, convert_sync_batchnorm(child))
        return module, (f"SyncBatchNorm over {world_size} processes (global batch statistics), "
                        f"per-process BN in {', '.join(keep)}")
    converted = convert_sync_batchnorm(module)
    return converted, f"SyncBatchNorm over {world_size} processes (global batch statistics)"
