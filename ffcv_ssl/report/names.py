"""How the report writes datasets, sizes, methods and backbones (one place, so tables and figures agree)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

DATASET_NAMES = {"inat21": "iNat21", "imagenet": "ImageNet", "places365": "Places365", "glc20": "GLC20",
                 "digits": "digits"}
METHOD_NAMES = {"simclr": "SimCLR", "supervised": "supervised", "byol": "BYOL", "moco": "MoCo",
                "random": "random init", "none": "scratch"}
# The paper's dataset order; datasets it lacks (our miniatures) follow alphabetically.
PAPER_ORDER = ("inat21", "imagenet", "places365", "glc20")


def dataset_name(name: str) -> str:
    return DATASET_NAMES.get(name, name or "-")


def method_name(name: str) -> str:
    return METHOD_NAMES.get(name, name)


def count_name(n: Optional[int], none: str = "all") -> str:
    """50000 -> 50k, 1000000 -> 1M, 1797 -> 1797, None -> ``none``."""
    if n is None:
        return none
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def size_name(n: Optional[int]) -> str:
    return count_name(n, "all")


def budget_name(n: Optional[int]) -> str:
    return count_name(n, "all")


def pool_name(pool: Sequence[str]) -> str:
    return "+".join(dataset_name(p) for p in pool)


def backbone_name(backbone: Tuple[str, str, Optional[int], str, Tuple[str, ...]]) -> str:
    """E.g. ``SimCLR ImageNet 1M``, ``SimCLR pool(iNat21+ImageNet) 500k``, ``... [jpeg:quality=10]``."""
    method, dataset, size, corruption, pool = backbone
    if method == "none":
        return "none (trained from scratch)"
    if method == "random":
        return f"random init ({dataset_name(dataset)})" if dataset else "random init"
    where = f"pool({pool_name(pool)})" if pool else dataset_name(dataset)
    text = f"{method_name(method)} {where} {size_name(size)}"
    return text if corruption == "none" else f"{text} [{corruption}]"


def dataset_order(names) -> list:
    """Sort datasets in the paper's order, others after it alphabetically."""
    return sorted(set(names), key=lambda d: (PAPER_ORDER.index(d) if d in PAPER_ORDER else len(PAPER_ORDER), d))


def by_count(n: Optional[int]) -> Tuple[bool, int]:
    """Sort key for sizes and budgets: ``None`` (all images) is the largest."""
    return (n is None, n or 0)


def sign_text(x: float) -> str:
    """``+0.012``; rounded first so that a float residue never prints as ``-0.000``."""
    return f"{round(x, 3) + 0.0:+.3f}"


def slug(*parts: object) -> str:
    """A file-name-safe join of parts (figure names)."""
    text = "_".join(str(p) for p in parts if p not in (None, ""))
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
