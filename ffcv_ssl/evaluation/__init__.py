"""Evaluation of frozen representations on cached features (Cole et al., CVPR 2022: Fig 2, Tables 1-3, Fig 5).

Extract once per (checkpoint, beton) into a ``FeatureCache``; then linear probes on label budgets, kNN,
concatenated representations and hierarchical scores all read the same memory-mapped features. Label budgets
live with the subsets they are (``dataset_writers.subsets``) and backbone sources in ``ffcv_ssl.backbones``: the
training engine uses both, and it sits before evaluation on the data path.

Names are resolved lazily (PEP 562), so importing the package does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "cache": ("CacheError", "FeatureCache", "FeatureCacheWriter", "cache_dir_for", "check_same_representation",
              "find_cache", "pipeline_tag"),
    "linear": ("LinearProbeConfig", "LinearProbeResult", "ProbeError", "linear_probe", "select_weight_decay",
               "topk_accuracy"),
    "knn": ("KnnConfig", "KnnResult", "knn_probe"),
    "hierarchy": ("Hierarchy", "HierarchyError"),
    "concat": ("ConcatFeatures", "ConcatenatedCache", "concat_caches"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
