"""The paper's numbers (Cole et al., CVPR 2022) from ``ffcv_ssl/data/paper_values.yaml``, with their sources.

Each value is keyed by the fields of our cell key that define it; a field the paper's setting leaves
open is absent and matches anything. ``PaperBook.find`` is the only way the report looks a value up.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from .collect import ReportError

PAPER_VALUES = Path(__file__).resolve().parent.parent / "data" / "paper_values.yaml"

CELL_FIELDS = ("kind", "method", "dataset", "size", "corruption", "pool", "concat", "eval_dataset", "budget", "level")
PINNED = ("kind", "method", "dataset", "size", "eval_dataset", "budget")
TABLES = ("fig2", "table1", "table2", "table3", "fig3", "fig4", "fig5")
METRICS = ("top1", "delta_top1", "gain_top1")
# A paper value keyed ``kind: linear`` is "a linear probe": it stands beside ours whichever probe protocol produced
# ours (the cached-feature ``linear`` or SimCLR's ``reference_linear``); the report names the protocol.
KIND_FAMILY = {"reference_linear": "linear"}
_BACKBONE_FIELDS = ("method", "dataset", "size", "corruption", "pool")
_VALUE_FIELDS = {"table", "metric", "value", "source", "read_off_figure", "note", "cell"}


@dataclass(frozen=True)
class PaperValue:
    table: str
    metric: str
    value: float
    source: str
    read_off_figure: bool
    cell: Tuple[Tuple[str, Any], ...]
    tolerance: float
    note: str = ""

    def matches(self, fields: Mapping[str, Any]) -> bool:
        cell = dict(self.cell)
        if "concat" in cell:    # the backbones as a set: which one is "main" (checkpoint=) is our choice, not the paper's
            want = (tuple((k, cell.pop(k)) for k in _BACKBONE_FIELDS if k in cell), *cell.pop("concat"))
            got = fields.get("concat", _ABSENT)
            if not isinstance(got, (list, tuple)):
                return False
            main = tuple(fields.get(k) for k in _BACKBONE_FIELDS)
            if not _concat_matches(want, (main, *got)):
                return False
        return all(want == _norm(name, fields.get(name, _ABSENT)) for name, want in cell.items())

    @property
    def pinned(self) -> bool:
        """Whether the entry fixes the whole setting (method, data, size, evaluation, budget)."""
        return set(PINNED) <= {name for name, _ in self.cell}

    def text(self) -> str:
        """``0.644``, or ``≈0.413`` when read off a figure (±1 pt)."""
        return f"{'≈' if self.read_off_figure else ''}{self.value:.3f}"


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    paper: str
    source: str


@dataclass(frozen=True)
class PaperBook:
    values: List[PaperValue]
    claims: Dict[str, Claim]
    hierarchies: Dict[str, List[str]] = field(default_factory=dict)
    source: Path = PAPER_VALUES
    shown: set = field(default_factory=set, compare=False)    # ids of values ``find`` returned (self-check)

    def find(self, table: str, metric: str = "top1", **fields: Any) -> Optional[PaperValue]:
        """The paper's value for a cell of ``table``, or None when the paper has no such cell.

        A cell the paper reports in another table counts too (e.g. Table 1's in-domain 1M value in Table 2's
        in-domain 1M row), but only from entries that pin every field of the setting, so that a value whose
        setting is partly unknown (Fig. 4, 5) never stands in for another table's cell.

        Raises:
            ReportError: two entries match equally specifically (an ambiguous data file).
        """
        if table not in TABLES:
            raise KeyError(f"unknown paper table {table!r}; known: {', '.join(TABLES)}")
        hits = [v for v in self.values if v.table == table and v.metric == metric and v.matches(fields)]
        if not hits:        # the same cell in another table; two readings of one cell: the first table wins
            others = [v for v in self.values if v.table != table and v.metric == metric and v.pinned
                      and v.matches(fields)]
            return self._shown(min(others, key=lambda v: TABLES.index(v.table))) if others else None
        hits.sort(key=lambda v: -len(v.cell))
        if len(hits) > 1 and len(hits[0].cell) == len(hits[1].cell):
            raise ReportError(f"{self.source}: {table} has two entries for the same cell {dict(hits[0].cell)}")
        return self._shown(hits[0])

    def _shown(self, value: PaperValue) -> PaperValue:
        self.shown.add(id(value))
        return value

    def unshown(self) -> List[PaperValue]:
        """Values no table has looked up since this book was loaded (``--paper-self-check`` wants none)."""
        return [v for v in self.values if id(v) not in self.shown]


@dataclass(frozen=True)
class AnyOf:
    """A cell field the paper fixes to one of several values without saying which (``{any_of: [...]}`` in the
    YAML), e.g. Fig. 4's dataset: one of the paper's four, UNCONFIRMED which."""

    values: Tuple[Any, ...]

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, AnyOf):
            return self.values == other.values
        return other in self.values

    def __hash__(self) -> int:
        return hash(self.values)


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def _norm(name: str, value: Any) -> Any:
    if name == "pool" and isinstance(value, (list, tuple)):
        return tuple(sorted(value))
    if name == "kind":
        return KIND_FAMILY.get(value, value)
    if isinstance(value, dict) and set(value) == {"any_of"}:
        return AnyOf(tuple(_norm(name, v) for v in value["any_of"]))
    if name == "concat" and isinstance(value, (list, tuple)):     # paper side: backbones as field mappings
        return tuple(tuple(sorted((k, _norm(k, v)) for k, v in dict(b).items())) for b in value)
    return value


def _concat_matches(want: Tuple, got: Any) -> bool:
    """The paper's appended backbones (field subsets) against ours (``CellKey.concat`` tuples), in any order."""
    if not isinstance(got, (list, tuple)) or len(got) != len(want):
        return False
    ours = [dict(zip(_BACKBONE_FIELDS, (_norm(n, x) for n, x in zip(_BACKBONE_FIELDS, b)))) for b in got]
    return any(all(all(o.get(k) == v for k, v in w) for w, o in zip(want, perm))
               for perm in itertools.permutations(ours))


def _parse_value(entry: Any, where: str, figure_tol: float, table_tol: float) -> PaperValue:
    if not isinstance(entry, dict):
        raise ReportError(f"{where}: expected a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - _VALUE_FIELDS)
    if unknown:
        raise ReportError(f"{where}: unknown field(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(sorted(_VALUE_FIELDS))}")
    missing = sorted({"table", "metric", "value", "source", "read_off_figure", "cell"} - set(entry))
    if missing:
        raise ReportError(f"{where}: missing field(s) {', '.join(missing)}")
    if entry["table"] not in TABLES or entry["metric"] not in METRICS:
        raise ReportError(f"{where}: table must be one of {TABLES} and metric one of {METRICS}")
    cell = entry["cell"]
    if not isinstance(cell, dict) or not set(cell) <= set(CELL_FIELDS):
        raise ReportError(f"{where}: cell fields must be among {', '.join(CELL_FIELDS)}, got {cell!r}")
    if not isinstance(entry["value"], (int, float)) or not isinstance(entry["read_off_figure"], bool):
        raise ReportError(f"{where}: value must be a number and read_off_figure true or false")
    read_off = entry["read_off_figure"]
    return PaperValue(table=entry["table"], metric=entry["metric"], value=float(entry["value"]),
                      source=str(entry["source"]), read_off_figure=read_off,
                      cell=tuple((k, _norm(k, cell[k])) for k in CELL_FIELDS if k in cell),
                      tolerance=figure_tol if read_off else table_tol, note=str(entry.get("note", "")))


def parse_paper_values(data: Any, source: Path = PAPER_VALUES) -> PaperBook:
    """Validate the data file's structure; every error names the entry and the fix."""
    if not isinstance(data, dict) or not isinstance(data.get("values"), list):
        raise ReportError(f"{source}: expected a mapping with a 'values' list")
    fig_tol, tab_tol = float(data.get("figure_tolerance", 0.01)), float(data.get("table_tolerance", 0.0005))
    values = [_parse_value(e, f"{source}: values[{i}]", fig_tol, tab_tol) for i, e in enumerate(data["values"])]
    seen = {}
    for i, v in enumerate(values):
        key = (v.table, v.metric, v.cell)
        if key in seen:
            raise ReportError(f"{source}: values[{i}] repeats values[{seen[key]}] ({v.table} {dict(v.cell)})")
        seen[key] = i
    claims = {}
    for cid, c in (data.get("claims") or {}).items():
        if not isinstance(c, dict) or not {"statement", "paper", "source"} <= set(c):
            raise ReportError(f"{source}: claims.{cid} needs statement, paper and source")
        claims[cid] = Claim(cid, str(c["statement"]), " ".join(str(c["paper"]).split()), str(c["source"]))
    hierarchies = {name: list(levels) for name, levels in (data.get("hierarchies") or {}).items()}
    return PaperBook(values=values, claims=claims, hierarchies=hierarchies, source=source)


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> PaperBook:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ReportError(f"cannot read the paper values {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ReportError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_paper_values(data, Path(path))


def load_paper_values(path: os.PathLike | str | None = None) -> PaperBook:
    """The paper's values and claims (default: the file shipped with the package)."""
    path = Path(path or PAPER_VALUES)
    if not path.is_file():
        raise ReportError(f"paper values file {path} does not exist")
    return _load(str(path), path.stat().st_mtime)
