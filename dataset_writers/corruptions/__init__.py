"""Corruptions applied at write time (Cole et al. 2022, §4.3 data quality): registry, specs, presets, chain.

``CorruptionChain.build(["resize:size=256", "downsample:size=256,factor=4"], seed=0)`` validates every spec
before any work; ``chain(image, sample_id)`` corrupts pixels deterministically per sample and
``chain.noisy_labels(labels, ids, num_classes)`` corrupts labels. Defaults: ``docs/corruptions.md``.
"""
from . import labels as _labels  # noqa: F401  (registers label_noise)
from . import pixels as _pixels  # noqa: F401  (registers the pixel corruptions)
from .chain import CorruptionChain
from .labels import label_noise_record
from .registry import CORRUPTIONS, CorruptionInfo, Params, get_corruption, param, register_corruption
from .spec import PAPER_CONDITIONS, PRESETS, CorruptionSpec, make_spec, parse_corruption, parse_corruptions

__all__ = ["CORRUPTIONS", "CorruptionChain", "CorruptionInfo", "CorruptionSpec", "PAPER_CONDITIONS", "PRESETS",
           "Params", "get_corruption", "label_noise_record", "make_spec", "param", "parse_corruption",
           "parse_corruptions", "register_corruption"]
