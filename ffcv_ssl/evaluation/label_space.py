"""Do the training and evaluation betons share a label space? And how wide must a classifier be?

A probe trained on one dataset's labels and scored on another's compares class indices that mean
different things: before this check, a 10-class digits probe scored on a 3-class ImageNet split exited 0
with top-1 = 0.0. The manifests beside the betons say which dataset they hold and how many classes it has,
so the check is cheap and runs before any feature is extracted.

The classifier width comes from the same place. Inferring it from the training budget's labels (the
old behaviour) crashes, or silently narrows the classifier, whenever a small budget misses the highest
class ids; the dataset's ``num_classes`` is the right width for every budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..console import warning_line
from ..errors import UserError


class LabelSpaceError(UserError):
    """Training and evaluation betons whose labels mean different things."""


@dataclass
class LabelSpace:
    """What evaluation needs to know about the labels: the classifier width and how it was decided."""

    num_classes: int
    cross_dataset: bool = False
    checked: bool = True                       # False when a manifest was missing (nothing could be compared)
    notes: List[str] = field(default_factory=list)
    level_counts: Dict[str, int] = field(default_factory=dict)   # classes per coarser label level (manifests)

    def classes_at(self, level: str, *labels: Any) -> int:
        """Classifier width at ``level``: ``num_classes`` for the fine label; for a coarser level the
        manifests' class count, never less than the largest label in ``labels`` (train and test) + 1."""
        if level == "label":
            return self.num_classes
        observed = max((int(np.max(a)) + 1 for a in labels if len(a)), default=0)
        return max(self.level_counts.get(level, 0), observed)

    def describe(self) -> Dict[str, Any]:
        """For ``Results.extra``."""
        return {"num_classes": self.num_classes, "cross_dataset": self.cross_dataset, "checked": self.checked,
                "notes": list(self.notes)}


def _level_counts(*infos: Any) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for info in infos:
        for level, names in (info.level_names or {}).items():
            counts[level] = max(counts.get(level, 0), len(names or []))
    return counts


def _identity(info: Any) -> Tuple[str, ...]:
    """The dataset a beton's labels belong to: its name, or a pool's sources in label-offset order."""
    manifest = info.manifest
    if manifest is None:
        return ("",)
    if manifest.dataset == "pool":
        return ("pool",) + tuple(s.dataset for s in manifest.sources)
    return (manifest.dataset,)


def _name(info: Any) -> str:
    ident = _identity(info)
    return ident[0] if len(ident) == 1 else f"a pool of {'+'.join(ident[1:])}"


def _mismatch(train: Any, test: Any) -> Optional[str]:
    """How the two label spaces differ (None when they are the same)."""
    if _identity(train) != _identity(test):
        return "datasets differ"
    if train.num_classes != test.num_classes:
        return "class counts differ"
    names_a = train.manifest.class_names if train.manifest is not None else None
    names_b = test.manifest.class_names if test.manifest is not None else None
    if names_a and names_b and list(names_a) != list(names_b):
        first = next(i for i, (a, b) in enumerate(zip(names_a, names_b)) if a != b) if len(names_a) == len(
            names_b) else min(len(names_a), len(names_b))
        return f"class names differ (first at class {first})"
    return None


def check_label_space(train: Any, test: Any, cross_dataset: bool = False) -> LabelSpace:
    """Compare two ``BetonInfo``s' manifests; return the label space a classifier must cover.

    Args:
        train, test: ``loading.info.beton_info`` of the labelled training beton and the evaluation beton.
        cross_dataset: the config asks to score a probe of one dataset on another's labels (by class
            index, on purpose); then a mismatch is a warning and the classifier covers both.

    Raises:
        LabelSpaceError: the datasets, class counts or class names differ and ``cross_dataset`` is false.
    """
    missing = list({i.path: i for i in (train, test) if i.manifest is None}.values())
    if missing:
        from dataset_writers.manifest import manifest_path

        for info in missing:
            warning_line(f"{info.path} has no manifest ({manifest_path(info.path).name}): cannot check that the "
                         f"training and evaluation labels mean the same classes; assuming "
                         f"{info.num_classes} classes from its labels (rewrite it with 'ffcv-ssl write')")
        width = max(train.num_classes, test.num_classes)
        return LabelSpace(width, cross_dataset, checked=False,
                          notes=[f"no manifest beside {i.path}" for i in missing],
                          level_counts=_level_counts(train, test))
    why = _mismatch(train, test)
    if why is None:
        return LabelSpace(train.num_classes, cross_dataset, level_counts=_level_counts(train, test))
    detail = (f"train beton {train.path} is {_name(train)} ({train.num_classes} classes) but test beton "
              f"{test.path} is {_name(test)} ({test.num_classes} classes)")
    if not cross_dataset:
        raise LabelSpaceError(f"{detail}: {why}, so its labels mean other classes; evaluate on a split of the "
                              "same dataset, or set cross_dataset=true to score class indices across datasets "
                              "on purpose")
    warning_line(f"cross-dataset evaluation: {detail}; {why}: class indices are compared as they are")
    return LabelSpace(max(train.num_classes, test.num_classes), True, notes=[f"{why}: {detail}"],
                      level_counts=_level_counts(train, test))
