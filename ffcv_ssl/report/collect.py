"""Find every ``results.json`` under a runs folder and resolve them into cells, listing what does not fit.

A *cell* is one slot of the paper's tables and figures. Two results files claim the same cell when their
``CellKey`` is equal (see ``cell_key``). Nothing is dropped silently: unreadable files, unknown schema
versions, invalid files and conflicting duplicates become ``Problem``s that the report prints.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import UserError
from ..results import SCHEMA, PretrainInfo, Results, ResultsError, results_from_dict
from .names import backbone_name, budget_name, dataset_name

RESULTS_NAME = "results.json"

# Fields of a record that are not part of the cell key but that usually explain why two runs disagree.
_IDENTITY_FIELDS = (("pretrain", "arch"), ("pretrain", "epochs"), ("pretrain", "checkpoint"),
                    ("pretrain", "checkpoint_sha256"), ("eval", "protocol"), ("eval", "train"), ("eval", "test"))


class ReportError(UserError):
    """A runs folder or output folder the report cannot use."""


BackboneKey = Tuple[str, str, Optional[int], str, Tuple[str, ...]]


@dataclass(frozen=True)
class CellKey:
    """What a result measures, i.e. which slot of the paper's tables it fills.

    Seeds, architecture, epochs and protocol text are deliberately not part of the key: runs that differ
    only in them claim the same slot. Different seeds are replicates (averaged); anything else that
    disagrees is a conflict.
    """

    kind: str
    method: str
    dataset: str
    size: Optional[int]
    corruption: str
    pool: Tuple[str, ...]
    concat: Tuple[BackboneKey, ...]
    eval_dataset: str
    budget: Optional[int]
    label_level: str

    def replace(self, **changes) -> "CellKey":
        return CellKey(**{**self.__dict__, **changes})

    @property
    def backbone(self) -> BackboneKey:
        return (self.method, self.dataset, self.size, self.corruption, self.pool)

    def describe(self) -> str:
        """One human-readable line, e.g. ``linear simclr digits/1k clean -> digits budget 500``."""
        back = backbone_name(self.backbone)
        for other in self.concat:
            back += " + " + backbone_name(other)
        level = "" if self.label_level == "label" else f" level {self.label_level}"
        return f"{self.kind} {back} -> {dataset_name(self.eval_dataset)} budget {budget_name(self.budget)}{level}"


def _backbone_key(info: PretrainInfo) -> BackboneKey:
    return (info.method, info.dataset, info.size, info.corruption or "none", tuple(sorted(info.pool)))


def cell_key(results: Results) -> CellKey:
    """The cell a results file claims (the documented key of docs/report.md)."""
    p, e = results.pretrain, results.eval
    return CellKey(kind=e.kind, method=p.method, dataset=p.dataset, size=p.size, corruption=p.corruption or "none",
                   pool=tuple(sorted(p.pool)), concat=tuple(sorted((_backbone_key(c) for c in results.concat),
                                                                   key=repr)),
                   eval_dataset=e.dataset, budget=e.budget, label_level=e.label_level)


@dataclass(frozen=True)
class Record:
    """One parsed results file; ``path`` is relative to the runs folder for display."""

    path: Path
    results: Results

    @property
    def replicate(self) -> Tuple[int, ...]:
        """Seeds that make two runs of one cell legitimate replicates rather than duplicates."""
        r = self.results
        return (r.pretrain.seed, r.eval.seed, *(c.seed for c in r.concat))

    @property
    def values(self) -> Tuple[Tuple[Tuple[str, float], ...], Tuple[Tuple[str, float], ...]]:
        r = self.results
        return (tuple(sorted((k, float(v)) for k, v in r.metrics.items())),
                tuple((k, float(v)) for k, v in r.levels.items()))


@dataclass(frozen=True)
class Problem:
    """Something the report could not use or had to leave out, with the files concerned.

    kind: ``unreadable``, ``unknown-schema``, ``invalid``, ``conflict``, ``duplicate``, ``missing`` or
    ``unplotted``.
    """

    kind: str
    message: str
    paths: Tuple[Path, ...] = ()


@dataclass
class Cell:
    """All records claiming one key, resolved: the mean over seed replicates, or a conflict (no value)."""

    key: CellKey
    records: List[Record]
    metrics: Dict[str, float] = field(default_factory=dict)
    levels: Dict[str, float] = field(default_factory=dict)
    conflict: bool = False
    replicates: int = 1

    @property
    def top1(self) -> Optional[float]:
        return None if self.conflict else self.metrics.get("top1")

    @property
    def paths(self) -> Tuple[Path, ...]:
        return tuple(r.path for r in self.records)

    def extra(self, name: str):
        """A value of ``results.extra`` shared by every record of the cell, else None."""
        values = {json.dumps(r.results.extra.get(name), sort_keys=True) for r in self.records}
        return self.records[0].results.extra.get(name) if len(values) == 1 else None


@dataclass
class Collection:
    runs_dir: Path
    n_files: int
    cells: Dict[CellKey, Cell]
    problems: List[Problem]

    def get(self, key: CellKey) -> Optional[Cell]:
        return self.cells.get(key)


def _read(path: Path, rel: Path) -> Tuple[Optional[Record], Optional[Problem]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        return None, Problem("unreadable", f"{rel}: cannot be read ({exc.__class__.__name__}: {exc})", (rel,))
    except json.JSONDecodeError as exc:
        return None, Problem("unreadable", f"{rel}: not valid JSON ({exc.msg} at line {exc.lineno})", (rel,))
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else None
        return None, Problem("unknown-schema", f"{rel}: unknown results schema {found!r} (this report reads "
                                               f"{SCHEMA}); not used", (rel,))
    try:
        return Record(rel, results_from_dict(data)), None
    except ResultsError as exc:
        return None, Problem("invalid", f"{rel}: {exc}; not used", (rel,))


def _differences(records: Sequence[Record]) -> str:
    """Names the non-key fields that differ between conflicting records (arch, checkpoint, ...)."""
    diffs = []
    for section, name in _IDENTITY_FIELDS:
        values = {str(getattr(getattr(r.results, section), name)) for r in records}
        if len(values) > 1:
            diffs.append(f"{section}.{name}")
    return f"; they also differ in {', '.join(diffs)}" if diffs else ""


def _value_text(record: Record) -> str:
    r = record.results
    text = f"top1={float(r.metrics['top1']):.4f}"
    if r.levels:
        text += " levels=" + ",".join(f"{k}:{float(v):.4f}" for k, v in r.levels.items())
    return f"{record.path} ({text})"


def _resolve(key: CellKey, records: List[Record], problems: List[Problem]) -> Cell:
    by_seed: Dict[Tuple[int, ...], List[Record]] = {}
    for rec in records:
        by_seed.setdefault(rec.replicate, []).append(rec)
    representatives: List[Record] = []
    conflict = False
    for group in by_seed.values():
        paths = tuple(r.path for r in group)
        if len({r.values for r in group}) > 1:
            conflict = True
            problems.append(Problem("conflict", f"{len(group)} runs claim the same cell ({key.describe()}) with "
                                                f"different values: {'; '.join(_value_text(r) for r in group)}"
                                                f"{_differences(group)}; the cell is left empty", paths))
        elif len(group) > 1:
            problems.append(Problem("duplicate", f"{len(group)} runs claim the same cell ({key.describe()}) with "
                                                 f"identical values: {', '.join(map(str, paths))}; counted once",
                                    paths))
        representatives.append(group[0])
    cell = Cell(key, records, conflict=conflict, replicates=len(representatives))
    if conflict:
        return cell
    results = [r.results for r in representatives]
    names = [k for k in results[0].metrics if all(k in r.metrics for r in results)]
    levels = [k for k in results[0].levels if all(k in r.levels for r in results)]
    cell.metrics = {k: sum(float(r.metrics[k]) for r in results) / len(results) for k in names}
    cell.levels = {k: sum(float(r.levels[k]) for r in results) / len(results) for k in levels}
    return cell


def find_results(runs_dir: Path) -> List[Path]:
    """Every ``results.json`` below ``runs_dir`` (following links, in sorted order for a stable report).

    Runs folders on clusters often link to scratch storage, so links are followed; a folder reached twice
    (a link back up the tree) is walked once.
    """
    found, seen = [], set()
    for root, dirs, files in os.walk(runs_dir, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        if RESULTS_NAME in files:
            found.append(Path(root) / RESULTS_NAME)
    return sorted(found)


def collect(runs_dir: os.PathLike | str) -> Collection:
    """Parse every results file under ``runs_dir`` and resolve them into cells.

    Raises:
        ReportError: ``runs_dir`` does not exist or is not a folder.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.exists():
        raise ReportError(f"runs folder {runs_dir} does not exist; pass the folder that holds the runs' "
                          f"{RESULTS_NAME} files")
    if not runs_dir.is_dir():
        raise ReportError(f"runs folder {runs_dir} is a file, not a folder; pass the folder that holds the runs")
    problems: List[Problem] = []
    grouped: Dict[CellKey, List[Record]] = {}
    paths = find_results(runs_dir)
    for path in paths:
        record, problem = _read(path, path.relative_to(runs_dir))
        if problem is not None:
            problems.append(problem)
        if record is not None:
            grouped.setdefault(cell_key(record.results), []).append(record)
    if not paths:
        problems.append(Problem("missing", f"no {RESULTS_NAME} files found under {runs_dir}"))
    cells = {key: _resolve(key, records, problems) for key, records in grouped.items()}
    return Collection(runs_dir=runs_dir, n_files=len(paths), cells=cells, problems=problems)
