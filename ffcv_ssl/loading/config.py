"""Typed config of the loaders: views (augmentation recipes) and how a beton is read.

Defaults are SimCLR's (Chen et al. 2020, App. A; ``../shared/design.md`` §1). The recipes of the other
pipelines are just values: supervised training is one view without colour or blur, BYOL's asymmetric
views are two view groups (blur 1.0 / 0.1, solarize 0 / 0.2); see ``configs/``.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from omegaconf import MISSING

from ..errors import ConfigError

ORDERS = ("random", "quasi_random", "sequential")
COLOUR_ON = ("auto", "host", "device")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ViewConfig:
    """``count`` views drawn with one recipe (cf. solo-learn's ``num_crops``)."""

    count: int = 1
    size: int = 224                       # output side in pixels
    crop: str = "random"                  # random (RandomResizedCrop) | center (eval crop) | full
    scale: Tuple[float, float] = (0.08, 1.0)
    ratio: Tuple[float, float] = (0.75, 1.3333333333333333)
    center_ratio: float = 0.875           # crop side / shorter side, for crop=center (224/256)
    flip_p: float = 0.5
    jitter_p: float = 0.8                 # colour jitter applied with this probability ...
    jitter: Tuple[float, float, float, float] = (0.8, 0.8, 0.8, 0.2)  # ... brightness, contrast, saturation, hue
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: Tuple[float, float] = (0.1, 2.0)
    blur_kernel: float = 0.1              # kernel size as a fraction of the view side (SimCLR: 10%)
    solarize_p: float = 0.0
    solarize_threshold: float = 128.0

    def validate(self) -> None:
        if self.count < 1:
            raise ConfigError(f"view count={self.count} must be >= 1")
        try:
            self.recipe().validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def recipe(self):
        from ..ops.decoder import ViewRecipe

        return ViewRecipe(size=(self.size, self.size), crop=self.crop, scale=tuple(self.scale),
                          ratio=tuple(self.ratio), center_ratio=self.center_ratio, flip_p=self.flip_p,
                          jitter_p=self.jitter_p, jitter=tuple(self.jitter), gray_p=self.gray_p,
                          blur_p=self.blur_p, blur_sigma=tuple(self.blur_sigma), blur_kernel=self.blur_kernel,
                          solarize_p=self.solarize_p, solarize_threshold=self.solarize_threshold)


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

    def recipes(self) -> list:
        """One ``ViewRecipe`` per output view, groups expanded by ``count``."""
        return [v.recipe() for v in self.views for _ in range(v.count)]
