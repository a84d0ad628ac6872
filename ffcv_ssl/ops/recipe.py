"""``ViewConfig``: one view group's augmentation recipe, the config schema and the kernel's input in one type.

Defaults are SimCLR's (Chen et al. 2020, arXiv 2002.05709, App. A). It lives in the ops layer because the
kernels read it (``decoder.recipes_to_arrays``); the loading configs (``loading/config.py``) list it. It
imports nothing heavy (no numba, no ffcv), so a config loads without compiling anything.
"""
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

from ..errors import ConfigError

CROPS = ("random", "center", "full")     # the kernel's codes for them: decoder.CROP_MODES
PROBABILITIES = ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p")


@dataclass
class ViewConfig:
    """``count`` views drawn with one recipe (cf. solo-learn's ``num_crops``).

    The output is ``size`` x ``size`` pixels, or ``size`` high and ``width`` wide when ``width`` is set:
    views are square in every recipe we know, so the common case stays one int (``data.views.0.size=160``
    in YAML and overrides), and a non-square view names its width instead of turning ``size`` into a
    pair. ``shape`` is the (height, width) the kernels render.

    ``crop``: ``random`` (RandomResizedCrop with ``scale``/``ratio``), ``center`` (square centre crop of
    side ``center_ratio`` x the shorter side, the evaluation crop) or ``full`` (resize the whole image).
    ``blur_kernel`` is the kernel size as a fraction of the view's shorter side (SimCLR: 10%).
    """

    count: int = 1
    size: int = 224                       # output height, and width unless ``width`` is set
    width: Optional[int] = None           # output width of a non-square view (None: square, = size)
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
    blur_kernel: float = 0.1              # kernel size as a fraction of the shorter view side (SimCLR: 10%)
    solarize_p: float = 0.0
    solarize_threshold: float = 128.0

    @property
    def shape(self) -> Tuple[int, int]:
        """(height, width) of the rendered view."""
        return self.size, self.size if self.width is None else self.width

    def validate(self) -> None:
        """One-line ``ConfigError`` naming the key, for a recipe the kernels cannot run."""
        if self.count < 1:
            raise ConfigError(f"view count={self.count} must be >= 1")
        for name in PROBABILITIES:
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"view {name}={p} must be a probability in [0, 1]")
        if self.crop not in CROPS:
            raise ConfigError(f"view crop={self.crop!r} must be one of {', '.join(CROPS)}")
        if self.size < 1:
            raise ConfigError(f"view size={self.size} must be positive")
        if self.width is not None and self.width < 1:
            raise ConfigError(f"view width={self.width} must be positive (or null for a square view)")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ConfigError(f"view scale={tuple(self.scale)} must satisfy 0 < min <= max <= 1")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError(f"view ratio={tuple(self.ratio)} must satisfy 0 < min <= max")
        if not 0.0 < self.center_ratio <= 1.0:
            raise ConfigError(f"view center_ratio={self.center_ratio} must be in (0, 1]")
        b, c, s, h = self.jitter
        if min(b, c, s) < 0 or not 0.0 <= h <= 0.5:
            raise ConfigError(f"view jitter={tuple(self.jitter)}: strengths must be >= 0 and hue in [0, 0.5]")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ConfigError(f"view blur_sigma={tuple(self.blur_sigma)} must satisfy 0 < min <= max")
        if not 0.0 <= self.solarize_threshold <= 255.0:
            raise ConfigError(f"view solarize_threshold={self.solarize_threshold} must be in [0, 255]")


def expand_views(groups: Sequence[ViewConfig]) -> List[ViewConfig]:
    """One ``count=1`` ``ViewConfig`` per output view, in order: each group repeated ``count`` times."""
    return [replace(g, count=1) for g in groups for _ in range(g.count)]
