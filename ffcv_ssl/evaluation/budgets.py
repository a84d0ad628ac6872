"""Labelled budgets: nested subsets of a training split for linear probes and fine-tuning.

Cole et al. (2022, Fig 2) vary the number of labelled images from 10k to 1M. Budgets are prefixes of
one seeded permutation (``dataset_writers.subsets``), so 10k ⊂ 50k ⊂ ... ⊂ 1M holds for a given seed,
exactly like the pretraining subsets; a larger budget only ever adds images.
"""
from __future__ import annotations

import re
from typing import List, Optional, Sequence, Union

import numpy as np

from dataset_writers.subsets import nested_subset
from ffcv_ssl.errors import UserError

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
