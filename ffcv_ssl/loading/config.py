"""Typed config of the loaders: how a beton is read, its views, and the evaluation/supervised view presets.

A view group is a ``ViewConfig`` (``ops/recipe.py``; the kernels read the same type). Defaults are SimCLR's
(Chen et al. 2020, App. A; Cole et al. 2022 follow SimCLR v2's configuration). The recipes of the other
pipelines are just values: supervised training is one view without colour or blur, BYOL's asymmetric views
are two view groups (blur 1.0 / 0.1, solarize 0 / 0.2); see ``configs/``.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from omegaconf import MISSING

from ..errors import ConfigError
from ..ops.recipe import ViewConfig

ORDERS = ("random", "quasi_random", "sequential")
COLOUR_ON = ("auto", "host", "device")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def eval_view(size: int = 224, center_ratio: float = 0.875) -> ViewConfig:
    """The evaluation pipeline: centre crop (224/256 of the shorter side), resized, nothing random."""
    return ViewConfig(count=1, size=size, crop="center", center_ratio=center_ratio, flip_p=0.0, jitter_p=0.0,
                      gray_p=0.0, blur_p=0.0, solarize_p=0.0)


def supervised_view(size: int = 224) -> ViewConfig:
    """Supervised training: RandomResizedCrop + flip only."""
    return ViewConfig(count=1, size=size, jitter_p=0.0, gray_p=0.0, blur_p=0.0, solarize_p=0.0)


@dataclass
class DataConfig:
    """How a beton is read for training and evaluation."""

    train: str = MISSING                  # a .beton written by 'ffcv-ssl write'
    val: Optional[str] = None             # optional: a beton for evaluation during/after training
    batch_size: int = 256                 # GLOBAL batch; each of N processes loads batch_size / N
    num_workers: int = 0                  # loader threads per process; 0: the CPUs in this process's affinity mask
    order: str = "random"                 # random | quasi_random (one process only) | sequential
    os_cache: bool = True                 # memory-map the beton (page cache shared by all processes on a node)
    drop_last: bool = True
    batches_ahead: int = 3
    half_scale_decode: bool = True        # libjpeg-turbo 1/2 DCT decode when every crop allows it
    roi_decode_fraction: float = 0.0      # decode only the crops' union when it is <= this fraction of the image
                                          # (0: off; measured slower than a full decode with libjpeg-turbo 2.1)
    colour_on: str = "auto"               # where colour jitter, grayscale, blur, solarize run: host (CPU-complete),
                                          # device (GPU split: batched torch on the consumer's device), auto
                                          # (device when the consumer is CUDA, else host); same draws either way
    colour_compile: bool = False          # GPU split: torch.compile the device-side colour (fused kernels; the
                                          # first batch compiles; benchmarks/gpu_check.sh measures both)
    views: List[ViewConfig] = field(default_factory=lambda: [ViewConfig(count=2)])
    subset: str = "all"                   # train on a nested subset of the beton: a count or 10k/50k/.../1M/all
    subset_seed: int = 0                  # (the writers' nested-subset rule: a prefix of one seeded permutation)
    subset_balanced: bool = False
    eval_size: int = 224
    eval_center_ratio: float = 0.875
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD

    def validate(self) -> None:
        if self.order not in ORDERS:
            raise ConfigError(f"data.order={self.order!r} must be one of {', '.join(ORDERS)}")
        if self.colour_on not in COLOUR_ON:
            raise ConfigError(f"data.colour_on={self.colour_on!r} must be one of {', '.join(COLOUR_ON)}")
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size={self.batch_size} must be >= 1")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers={self.num_workers} must be >= 0 (0: use the affinity mask)")
        if not self.views:
            raise ConfigError("data.views must list at least one view")
        for v in self.views:
            v.validate()
