"""Markdown tables of each experiment, with the paper's value and the difference beside each of ours.

Cell text is ``ours`` or ``ours (paper P, diff D)``; ``P`` starts with ``≈`` when read off a figure (±1 pt).
An empty slot is ``–`` and is also listed as a ``missing`` problem; a conflicting cell reads ``conflict``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Union

from .claims import concat_gain, simclr_deltas
from .collect import Cell, CellKey, Problem
from .experiments import (CONDITION_NAMES, SCRATCH, Baselines, ConcatRow, Fig2Panel, GranularitySetting, Matrix,
                          MethodGroup, PoolRow, Pooling, QualitySetting, paper_condition)
from .names import backbone_name, budget_name, dataset_name, method_name, pool_name, sign_text, size_name
from .paper import PaperBook, PaperValue

MISSING = "–"
CONFLICT = "conflict"


@dataclass
class Table:
    header: List[str]
    rows: List[List[str]]
    caption: str = ""

    def markdown(self) -> str:
        def line(cells: List[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        text = [f"*{self.caption}*", ""] if self.caption else []
        text += [line(self.header), "|" + "|".join("---" for _ in self.header) + "|"]
        text += [line(r) for r in self.rows]
        return "\n".join(text)


Block = Union[Table, str]
TableBuilder = Callable[[object, PaperBook, List[Problem]], List[Block]]
TABLES: Dict[str, TableBuilder] = {}


def tables_for(experiment: str):
    def wrap(fn: TableBuilder) -> TableBuilder:
        TABLES[experiment] = fn
        return fn
    return wrap


def key_fields(key: CellKey, **extra) -> dict:
    """A cell key as the fields a paper value is matched on."""
    fields = dict(kind=key.kind, method=key.method, dataset=key.dataset, size=key.size, corruption=key.corruption,
                  pool=key.pool, concat=key.concat, eval_dataset=key.eval_dataset, budget=key.budget)
    fields.update(extra)
    return fields


def value_text(value: Optional[float], paper: Optional[PaperValue] = None, signed: bool = False,
               replicates: int = 1) -> str:
    """``0.612``, ``0.612 (paper 0.644, diff -0.032)``; ``signed`` for deltas (``-0.012``)."""
    fmt = sign_text if signed else "{:.3f}".format
    text = fmt(value)
    notes = [f"{replicates} seeds"] if replicates > 1 else []
    if paper is not None:
        ptext = ("≈" if paper.read_off_figure else "") + fmt(paper.value)
        notes.append(f"paper {ptext}, diff {sign_text(value - paper.value)}")
    return f"{text} ({'; '.join(notes)})" if notes else text


def cell_text(cell: Optional[Cell], paper: Optional[PaperValue] = None) -> str:
    if cell is None:
        return MISSING
    if cell.conflict:
        return CONFLICT
    return value_text(cell.top1, paper, replicates=cell.replicates)


def missing(problems: List[Problem], where: str, what: str) -> None:
    problems.append(Problem("missing", f"{where}: no result for {what}"))


def protocol_note(cells: Iterable[Optional[Cell]]) -> str:
    """Which protocol produced the numbers of a table: each ``eval.kind`` with the ``eval.protocol`` line its
    results.json files recorded (e.g. the cached-feature L-BFGS probe vs SimCLR's 90-epoch augmented probe)."""
    seen: Dict[str, List[str]] = {}
    for c in cells:
        for r in (c.records if c is not None else []):
            texts = seen.setdefault(r.results.eval.kind, [])
            text = r.results.eval.protocol or "(no protocol recorded)"
            if text not in texts:
                texts.append(text)
    if not seen:
        return ""
    return "Protocol: " + "; ".join(f"`{kind}` = {' | '.join(texts)}" for kind, texts in seen.items()) + "."


# ---------------------------------------------------------------- Fig. 2
@tables_for("fig2")
def fig2_tables(panels: List[Fig2Panel], paper: PaperBook, problems: List[Problem]) -> List[Block]:
    out: List[Block] = []
    for p in panels:
        where = f"Fig. 2 {p.kind} {dataset_name(p.eval_dataset)}"
        header = ["labelled images"] + [f"SimCLR {size_name(s)}" for s in p.sizes]
        header += ["scratch"] if p.scratch else []
        curves = [(f"SimCLR {size_name(s)}", {b: c for (sz, b), c in p.simclr.items() if sz == s}) for s in p.sizes]
        curves += [("supervised from scratch", p.scratch)] if p.scratch else []
        for name, cells in curves:      # a gap inside a curve is missing; budgets beyond its ends are not
            have = [i for i, b in enumerate(p.budgets) if b in cells]
            for b in p.budgets[have[0]:have[-1] + 1]:
                if b not in cells:
                    missing(problems, where, f"{name} at {budget_name(b)} labels")
        rows = []
        for b in p.budgets:
            row = [budget_name(b)]
            for _, cells in curves:
                cell = cells.get(b)
                row.append(cell_text(cell, cell and paper.find("fig2", **key_fields(cell.key))))
            rows.append(row)
        out.append(Table(header, rows, f"{dataset_name(p.eval_dataset)}, {p.kind}: SimCLR pretrained in-domain "
                                       f"(one column per pretraining size) and supervised from scratch"))
        out.append(protocol_note([*p.simclr.values(), *p.scratch.values()]))
    return out


# ---------------------------------------------------------------- Fig. 3
@tables_for("fig3")
def fig3_tables(groups: List[MethodGroup], paper: PaperBook, problems: List[Problem]) -> List[Block]:
    out: List[Block] = []
    for g in groups:
        rows = []
        for m, per in g.cells.items():
            name = "supervised from scratch" if m == SCRATCH else f"{method_name(m)} ({g.kind} probe)"
            rows.append([name] + [cell_text(per.get(b), per.get(b) and paper.find("fig3", **key_fields(per[b].key)))
                                  for b in g.budgets])
        out.append(Table(["method"] + [budget_name(b) for b in g.budgets], rows,
                         f"{dataset_name(g.dataset)} {size_name(g.size)} pretraining images: top-1 per labelled "
                         f"images"))
        out.append(protocol_note(c for per in g.cells.values() for c in per.values()))
    return out


# ---------------------------------------------------------------- Table 1
@tables_for("table1")
def table1_tables(matrices: List[Matrix], paper: PaperBook, problems: List[Problem]) -> List[Block]:
    out: List[Block] = []
    for m in matrices:
        header = ["pretraining \\ evaluation"] + [dataset_name(c) for c in m.cols]
        rows = []
        for r in m.rows:
            row = [f"{dataset_name(r)} ({size_name(m.sizes[r])})"]
            for c in m.cols:
                cell = m.cells.get((r, c))
                if cell is None:
                    missing(problems, f"Table 1 {method_name(m.method)}",
                            f"{dataset_name(r)} {size_name(m.sizes[r])} -> {dataset_name(c)} "
                            f"({budget_name(m.budgets[c])} labels)")
                row.append(cell_text(cell, cell and paper.find("table1", **key_fields(cell.key))))
            rows.append(row)
        if m.supervised:
            sizes = sorted({size_name(c.key.size) for c in m.supervised.values()})
            rows.append([f"supervised, in-domain ({', '.join(sizes)})"]
                        + [cell_text(m.supervised.get(c), m.supervised.get(c)
                                     and paper.find("table1", **key_fields(m.supervised[c].key))) for c in m.cols])
        budgets = ", ".join(f"{dataset_name(c)} {budget_name(m.budgets[c])}" for c in m.cols)
        out.append(Table(header, rows, f"{method_name(m.method)} ({m.kind} probe): rows are pretraining datasets "
                                       f"(pretraining size in brackets), columns evaluation datasets; labels per "
                                       f"column: {budgets}"))
        out.append(protocol_note([*m.cells.values(), *m.supervised.values()]))
    return out


# ---------------------------------------------------------------- Table 2
def _pool_row_name(row: PoolRow) -> str:
    if not row.pool:
        return f"in-domain {size_name(row.size)}"
    return f"pool({pool_name(row.pool)}) {size_name(row.size)}"


@tables_for("table2")
def table2_tables(tables: List[Pooling], paper: PaperBook, problems: List[Problem]) -> List[Block]:
    out: List[Block] = []
    for t in tables:
        rows = []
        for row in t.rows:
            line = [_pool_row_name(row)]
            for ev in t.cols:
                cell = t.cells.get((row, ev))
                if cell is None:        # the paper evaluates every pool on every column, in its pool or not
                    missing(problems, f"Table 2 {method_name(t.method)}",
                            f"{_pool_row_name(row)} on {dataset_name(ev)}")
                line.append(cell_text(cell, cell and paper.find("table2", **key_fields(cell.key))))
            rows.append(line)
        budgets = ", ".join(f"{dataset_name(c)} {budget_name(t.budgets[c])}" for c in t.cols)
        out.append(Table(["pretraining"] + [dataset_name(c) for c in t.cols], rows,
                         f"{method_name(t.method)}, linear top-1 ({t.kind} probe); labels per column: {budgets}"))
        out.append(protocol_note(t.cells.values()))
    return out


# ---------------------------------------------------------------- Table 3
@tables_for("table3")
def table3_tables(rows: List[ConcatRow], paper: PaperBook, problems: List[Problem]) -> List[Block]:
    lines = []
    for r in rows:
        k = r.cell.key
        singles = []
        for backbone, cell in r.singles:
            if cell is None:
                missing(problems, "Table 3", f"{backbone_name(backbone)} alone on {dataset_name(k.eval_dataset)} "
                                             f"({budget_name(k.budget)} labels)")
            singles.append(cell_text(cell))
        values = [c.top1 for _, c in r.singles if c is not None and c.top1 is not None]
        ours = r.cell.top1
        gain = sign_text(ours - max(values)) if ours is not None and values else MISSING
        found = concat_gain(r)
        gain_in = value_text(found[0], paper.find("table3", metric="gain_top1", **key_fields(k)), signed=True) \
            if found else MISSING
        lines.append([dataset_name(k.eval_dataset), budget_name(k.budget),
                      " ⊕ ".join(backbone_name(b) for b, _ in r.singles), " / ".join(singles),
                      cell_text(r.cell), gain, gain_in])
    cells = [c for r in rows for c in (r.cell, *(c for _, c in r.singles))]
    return [Table(["evaluation", "labelled images", "backbones", "each alone", "concatenated", "gain vs best single",
                   "gain vs in-domain"], lines, "linear top-1 on concatenated frozen features; gain vs in-domain = "
                                            "concatenated minus the self-supervised backbone of the evaluation "
                                            "dataset alone"), protocol_note(cells)]


# ---------------------------------------------------------------- Fig. 4
@tables_for("fig4")
def fig4_tables(settings: List[QualitySetting], paper: PaperBook, problems: List[Problem]) -> List[Block]:
    out: List[Block] = []
    for s in settings:
        where = (f"Fig. 4 {dataset_name(s.dataset)} {size_name(s.size)} -> {dataset_name(s.eval_dataset)} "
                 f"({budget_name(s.budget)} labels{'' if s.kind == 'linear' else ', ' + s.kind})")
        rows = []
        for c in s.corruptions:
            cond = paper_condition(c)
            row = [c, CONDITION_NAMES.get(cond, MISSING) if cond else MISSING]
            for m in s.methods:
                d = s.deltas.get((c, m))
                if d is None:
                    missing(problems, where, f"{method_name(m)} pretrained with {c}")
                    row.append(MISSING)
                elif d.clean is None:
                    missing(problems, where, f"clean {method_name(m)} baseline for {c} (no delta)")
                    row.append("no clean run")
                elif d.value is None:
                    row.append(CONFLICT)
                else:
                    ref = paper.find("fig4", metric="delta_top1", **key_fields(d.corrupted.key, corruption=cond)) \
                        if cond else None
                    row.append(value_text(d.value, ref, signed=True))
            rows.append(row)
        out.append(Table(["corruption", "paper condition"] + [f"Δ {method_name(m)}" for m in s.methods], rows,
                         f"{where}: Δ top-1 = corrupted minus clean pretraining, evaluated on clean images; our "
                         f"numbers are on {dataset_name(s.dataset)} (the paper's dataset and size are unconfirmed)"))
        out.append(protocol_note(c for d in s.deltas.values() for c in (d.corrupted, d.clean)))
        clean = []
        for m in s.methods:
            base = next((d.clean for (c, mm), d in s.deltas.items() if mm == m and d.clean is not None), None)
            if base is not None and base.top1 is not None:
                clean.append(f"{method_name(m)} {base.top1:.3f}")
        if clean:
            out.append(f"Clean top-1: {', '.join(clean)}.")
        deltas = simclr_deltas(s)
        if deltas:
            worst, value = min(deltas, key=lambda cv: cv[1])
            out.append(f"Hurts SimCLR most: `{worst}` (Δ {sign_text(value)}).")
    return out


# ---------------------------------------------------------------- Fig. 5
@tables_for("fig5")
def fig5_tables(settings: List[GranularitySetting], paper: PaperBook, problems: List[Problem]) -> List[Block]:
    out: List[Block] = []
    for s in settings:
        k = s.key
        where = f"Fig. 5 {dataset_name(k.dataset)} -> {dataset_name(k.eval_dataset)}"
        for needed in ("simclr", "supervised"):
            if needed not in s.cells:
                missing(problems, where, f"hierarchical evaluation of {method_name(needed)}")
        methods = list(s.cells)
        gap = "simclr" in s.cells and "supervised" in s.cells
        rows = []
        for lv in s.levels:
            row = [lv]
            for m in methods:
                c = s.cells[m]
                if c.conflict:
                    row.append(CONFLICT)
                    continue
                if lv not in c.levels:          # a level only another method reports
                    row.append(MISSING)
                    continue
                ref = paper.find("fig5", **key_fields(c.key, level=lv))
                row.append(value_text(c.levels[lv], ref, replicates=c.replicates))
            if gap:
                sim, sup = s.cells["simclr"], s.cells["supervised"]
                row.append(MISSING if sim.conflict or sup.conflict or lv not in sim.levels or lv not in sup.levels
                           else sign_text(sup.levels[lv] - sim.levels[lv]))
            rows.append(row)
        header = ["level"] + [f"{method_name(m)} ({size_name(s.cells[m].key.size)})" for m in methods] \
            + (["gap (supervised - SimCLR)"] if gap else [])
        out.append(Table(header, rows, f"{where} ({budget_name(k.budget)} labels): top-1 per level, coarse to fine; "
                                       f"pretraining images in brackets"))
        out.append(protocol_note(s.cells.values()))
    return out


# ---------------------------------------------------------------- baselines
@tables_for("baselines")
def baseline_tables(data: Baselines, paper: PaperBook, problems: List[Problem]) -> List[Block]:
    out: List[Block] = []
    if data.random:
        rows = []
        for row in data.random:
            k = row.random.key
            if row.simclr is None:
                missing(problems, "Baselines", f"in-domain SimCLR {k.kind} on {dataset_name(k.eval_dataset)} "
                                               f"({budget_name(k.budget)} labels) to compare with the random backbone")
            margin = (sign_text(row.simclr.top1 - row.random.top1) if row.simclr is not None
                      and row.simclr.top1 is not None and row.random.top1 is not None else MISSING)
            simclr = MISSING if row.simclr is None else f"{size_name(row.simclr.key.size)}: {cell_text(row.simclr)}"
            rows.append([k.kind, dataset_name(k.eval_dataset), budget_name(k.budget), cell_text(row.random),
                         simclr, margin])
        out.append(Table(["evaluation", "dataset", "labelled images", "random init", "SimCLR (size: top-1)",
                          "margin"], rows, "SimCLR features vs an untrained backbone of the same architecture"))
        out.append(protocol_note(c for row in data.random for c in (row.random, row.simclr)))
    if data.knn:
        rows = [[backbone_name(c.key.backbone), dataset_name(c.key.eval_dataset), budget_name(c.key.budget),
                 cell_text(c)] for c in data.knn]
        out.append(Table(["backbone", "evaluation", "labelled images", "kNN top-1"], rows,
                         "kNN classification on frozen features"))
        out.append(protocol_note(data.knn))
    return out


def appendix_table(cells: List[Cell]) -> Table:
    """Every cell, so that no result is invisible even when no experiment uses it."""
    rows = []
    for c in cells:
        k = c.key
        back = " ⊕ ".join(backbone_name(b) for b in (k.backbone, *k.concat))
        top5 = MISSING if c.conflict or "top5" not in c.metrics else f"{c.metrics['top5']:.3f}"
        rows.append([k.kind, back, dataset_name(k.eval_dataset), budget_name(k.budget), k.label_level,
                     cell_text(c), top5, str(len(c.records)), str(c.records[0].path)])
    return Table(["kind", "backbone", "evaluation", "labelled images", "label", "top-1", "top-5", "runs", "file"], rows)
