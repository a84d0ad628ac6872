"""Which of the paper's findings a study can test at all, from what its data is.

A miniature study (32-px digits, 10 classes) runs every lens of the paper, but some findings are about things
such data does not have: a resolution effect needs images with detail to lose, a fine-grained gap needs many
fine classes. Judging those findings on such data would report passes and failures that mean nothing, so the
report shows them as "not testable here", with the reason.

The facts come from the beton manifests beside the evaluation betons named in ``results.json`` (``eval.train``):
the stored image size and the number of classes. Where no manifest can be read the facts are unknown and the
finding is tested (the report cannot say it is out of scope).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, Iterable, Optional

if TYPE_CHECKING:
    from dataset_writers.manifest import Manifest

# Our rules (the paper states none; docs/report.md "What a study can test"):
MIN_SIDE_FOR_RESOLUTION = 128   # px: the paper's 4x downsample of such an image still leaves > 32 px of detail
MIN_FINE_CLASSES = 100          # a "fine-grained" level: the paper's finest levels have 365 to 10,000 classes


@dataclass(frozen=True)
class DataFacts:
    """What the report knows about one evaluation dataset's images (None: unknown)."""

    dataset: str
    image_side: Optional[float] = None        # mean shorter side of the stored images, px
    num_classes: Optional[int] = None         # classes of the finest label
    source: str = ""                          # the manifest read


def _manifest_of(beton: str) -> Optional["Manifest"]:
    """The beton's manifest, or None when it is missing or unreadable: the report then marks the facts unknown."""
    from dataset_writers.errors import WriterError
    from dataset_writers.manifest import read_manifest

    try:
        return read_manifest(beton)
    except WriterError:
        return None


def facts_from_manifest(dataset: str, manifest: "Manifest", source: str = "") -> DataFacts:
    stats = manifest.image_stats
    sides = [span.mean for span in (stats.stored_height, stats.stored_width) if span is not None]
    side = min(sides) if len(sides) == 2 else None
    return DataFacts(dataset, side, manifest.num_classes, source)


def gather_facts(train_betons: Iterable[tuple]) -> Dict[str, DataFacts]:
    """``(eval dataset, train beton path)`` pairs -> facts per dataset (the first readable manifest wins)."""
    out: Dict[str, DataFacts] = {}
    for dataset, beton in train_betons:
        if dataset in out or not beton:
            continue
        manifest = _manifest_of(str(beton))
        if manifest is not None:
            out[dataset] = facts_from_manifest(dataset, manifest, str(beton))
    return out


def _needs_resolution(f: DataFacts) -> str:
    if f.image_side is not None and f.image_side < MIN_SIDE_FOR_RESOLUTION:
        return (f"{f.dataset} images are {f.image_side:.0f} px; the corruption findings are about resolution and "
                f"need >= {MIN_SIDE_FOR_RESOLUTION} px images")
    return ""


def _needs_fine_classes(f: DataFacts) -> str:
    if f.num_classes is not None and f.num_classes < MIN_FINE_CLASSES:
        return (f"{f.dataset} has {f.num_classes} classes at its finest level; a fine-grained gap needs >= "
                f"{MIN_FINE_CLASSES}")
    return ""


# claim id prefix -> rule; a registry, so a new finding states what it needs in one line.
REQUIREMENTS: Dict[str, Callable[[DataFacts], str]] = {
    "quality.": _needs_resolution,
    "granularity.": _needs_fine_classes,
}


def untestable_reason(claim_id: str, facts: Optional[DataFacts]) -> str:
    """Why ``claim_id`` cannot be tested on data with ``facts`` ("" = it can, or the facts are unknown)."""
    if facts is None:
        return ""
    for prefix, rule in REQUIREMENTS.items():
        if claim_id.startswith(prefix):
            return rule(facts)
    return ""
