"""Nested static subsets: a prefix of one seeded permutation, so 50k ⊂ 125k ⊂ ... ⊂ 1M always hold.

The same function picks pretraining subsets (Cole et al. §3.1: 50k ... 1M images) and labelled budgets
for evaluation (10k ... 1M labels; the second half of this module: parsing, naming and checking budgets,
used by the writer, the training engine and evaluation alike, hence here, at the start of the data path). Uniform by default; ``balanced`` interleaves per-class permutations
round-robin, so every prefix is as class-balanced as the class sizes allow, and still nested.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from ffcv_ssl.errors import UserError

from .errors import WriterError


def subset_order(labels: np.ndarray, seed: int, balanced: bool = False) -> np.ndarray:
    """The seeded order whose prefixes are the nested subsets (positions into ``labels``)."""
    labels = np.asarray(labels)
    n = len(labels)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EB5E7]))
    if not balanced:
        return rng.permutation(n)
    classes = np.unique(labels)
    class_order = rng.permutation(classes)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in class_order]
    # round r takes the r-th member of every class that still has one, classes in a fixed random order
    width = max((len(m) for m in per_class), default=0)
    grid = np.full((width, len(per_class)), -1, dtype=np.int64)
    for j, members in enumerate(per_class):
        grid[: len(members), j] = members
    flat = grid.reshape(-1)
    return flat[flat >= 0]


def nested_subset(labels: np.ndarray, n: int, seed: int, balanced: bool = False) -> np.ndarray:
    """Sorted positions of the ``n``-element subset; ``nested_subset(.., m) ⊂ nested_subset(.., n)`` for m <= n."""
    total = len(labels)
    if n <= 0:
        raise WriterError(f"--subset {n}: a subset needs at least one sample")
    if n > total:
        raise WriterError(f"--subset {n} is larger than the split ({total} samples); drop --subset or lower it")
    return np.sort(subset_order(labels, seed, balanced)[:n])


def subset_record(labels: np.ndarray, n: int, seed: int, balanced: bool = False,
                  ids: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """The manifest's ``subset`` entry: enough to regenerate the selection from the full split.

    ``of_ids_sha256`` fingerprints the full split the permutation ran over, so a reader that indexes a
    changed dataset (files added or skipped) is detected instead of silently giving a different "500k".
    """
    from .manifest import ids_digest

    record: Dict[str, Any] = {
        "n": int(n), "of": int(len(labels)), "seed": int(seed), "balanced": bool(balanced),
        "rule": "sorted prefix of one seeded permutation (dataset_writers.subsets.subset_order); "
                "smaller n with the same seed is always a subset",
    }
    if ids is not None:
        record["of_ids_sha256"] = ids_digest(np.asarray(ids))
    return record


# --- labelled budgets (Cole et al. Fig 2: 10k ... 1M labels), nested exactly like the pretraining subsets ---

#: The paper's budgets; ``None`` is "all labels of the split".
BUDGETS: tuple = (10_000, 50_000, 125_000, 250_000, 500_000, 1_000_000, None)

_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000}


class BudgetError(UserError):
    """A label budget that cannot be parsed or does not fit the training split."""


def parse_budget(value: Union[int, str, None]) -> Optional[int]:
    """``10000``, ``"10k"``, ``"1M"``, ``"all"``/``None`` -> number of labels (``None`` = all)."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        n = int(value)
    else:
        text = str(value).strip().lower().replace("_", "")
        if text in ("all", "none", "full"):
            return None
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([km]?)", text)
        if not match:
            raise BudgetError(f"label budget {value!r} is not a number (e.g. 10000, 10k, 1M) or 'all'")
        n = int(round(float(match.group(1)) * _SUFFIX[match.group(2)]))
    if n <= 0:
        raise BudgetError(f"label budget {value!r} must be positive, or 'all'")
    return n


def budget_name(budget: Optional[int]) -> str:
    """Short name for file names and tables: 10k, 125k, 1M, all."""
    if budget is None:
        return "all"
    if budget % 1_000_000 == 0:
        return f"{budget // 1_000_000}M"
    if budget % 1_000 == 0:
        return f"{budget // 1_000}k"
    return str(budget)


def check_budget(budget: Optional[int], split_size: int, where: str = "the training split") -> None:
    """One-line error, before any work, when ``budget`` exceeds the split."""
    if budget is not None and budget > split_size:
        raise BudgetError(f"label budget {budget_name(budget)} ({budget} labels) is larger than {where} "
                          f"({split_size} samples); choose a budget <= {split_size} or 'all'")


def budget_positions(labels: np.ndarray, budget: Union[int, str, None], seed: int = 0, balanced: bool = False,
                     where: str = "the training split") -> np.ndarray:
    """Sorted positions (into ``labels``) of the ``budget``-label subset; nested across budgets for one seed.

    Args:
        labels: fine labels of the whole training split (used for class balance only).
        budget: number of labels, a string such as ``"50k"``, or ``None``/``"all"``.
        seed: subset seed; the same seed gives nested subsets for every budget.
        balanced: interleave classes so every prefix is as class-balanced as the class sizes allow.
        where: how to name the split in the error message (e.g. the beton path).
    """
    n = parse_budget(budget)
    total = len(labels)
    check_budget(n, total, where)
    if n is None:
        return np.arange(total, dtype=np.int64)
    return nested_subset(np.asarray(labels), n, seed, balanced).astype(np.int64)


def budgets_that_fit(split_size: int, budgets: Sequence[Optional[int]] = BUDGETS) -> List[Optional[int]]:
    """The budgets a split of ``split_size`` samples can serve (``None`` = all always fits)."""
    return [b for b in budgets if b is None or b <= split_size]
