"""The paper's figures (Fig. 2, 4, 5) from our cells, drawn on matplotlib's Agg canvas.

No pyplot: every figure is a ``matplotlib.figure.Figure`` with its own ``FigureCanvasAgg``, so nothing
global changes and tests can inspect the plotted data (lines, bars, axis scales) before anything is saved.
The paper's values, where the cell exists in the paper, are drawn as black crosses labelled "paper".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from .collect import Cell, Problem
from .experiments import CONDITION_NAMES, Fig2Panel, GranularitySetting, QualitySetting, paper_condition
from .names import budget_name, dataset_name, method_name, size_name, slug
from .paper import PaperBook
from .tables import key_fields

PAPER_LABEL = "paper (Cole et al.)"
# One colour per method across Fig. 4 and Fig. 5, so SimCLR is the same colour everywhere.
METHOD_COLORS = {"simclr": "C0", "supervised": "C1", "byol": "C2", "moco": "C3", "random": "C7", "none": "black"}
SCRATCH_LABEL = "supervised from scratch"


@dataclass
class FigureOut:
    name: str                                   # file name inside the report folder
    figure: object                              # matplotlib.figure.Figure
    caption: str


FigureBuilder = Callable[[object, PaperBook, List[Problem]], List[FigureOut]]
FIGURES: Dict[str, FigureBuilder] = {}


def figures_for(experiment: str):
    def wrap(fn: FigureBuilder) -> FigureBuilder:
        FIGURES[experiment] = fn
        return fn
    return wrap


def new_axes(width: float = 6.0, height: float = 4.0):
    """A figure with one axes on its own Agg canvas (matplotlib imported here: the CLI stays fast)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


# ---------------------------------------------------------------- Fig. 2
def _x(budget: Optional[int], cell: Cell, problems: List[Problem], where: str) -> Optional[int]:
    """Where a budget goes on the log axis; "all labels" needs the count the evaluation recorded."""
    if budget is not None:
        return budget
    n = cell.extra("n_train")
    if isinstance(n, int) and n > 0:
        return n
    problems.append(Problem("unplotted", f"{where}: {cell.key.describe()} uses all labels but its results do not "
                                         f"record how many (extra.n_train), so it is in the table, not the plot",
                            cell.paths))
    return None


@figures_for("fig2")
def fig2_figures(panels: List[Fig2Panel], paper: PaperBook, problems: List[Problem]) -> List[FigureOut]:
    out = []
    for p in panels:
        where = f"Fig. 2 {p.kind} {dataset_name(p.eval_dataset)}"
        fig, ax = new_axes()
        refs: List[Tuple[float, float]] = []
        curves = [(f"SimCLR {size_name(s)}", {b: p.simclr.get((s, b)) for b in p.budgets}, "-") for s in p.sizes]
        curves.append((SCRATCH_LABEL, p.scratch, "--"))
        for label, cells, style in curves:
            pts = []
            for b in p.budgets:
                cell = cells.get(b)
                if cell is None or cell.top1 is None:
                    continue
                x = _x(b, cell, problems, where)
                if x is None:
                    continue
                pts.append((x, cell.top1))
                ref = paper.find("fig2", **key_fields(cell.key))
                if ref is not None:
                    refs.append((x, ref.value))
            if pts:
                pts.sort()
                color = "black" if style == "--" else None
                ax.plot([x for x, _ in pts], [y for _, y in pts], linestyle=style, marker="o", label=label,
                        color=color)
        if not ax.lines:                 # nothing plottable (see the 'unplotted' problems): table only
            continue
        if refs:
            ax.plot([x for x, _ in refs], [y for _, y in refs], linestyle="none", marker="x", color="black",
                    markersize=8, label=PAPER_LABEL)
        ax.set_xscale("log")
        ax.set_xlabel("labelled images")
        ax.set_ylabel("top-1")
        ax.set_title(f"{dataset_name(p.eval_dataset)}: {p.kind}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        out.append(FigureOut(f"{slug('fig2', p.kind, p.eval_dataset)}.png", fig,
                             f"Fig. 2 ({p.kind}, {dataset_name(p.eval_dataset)}): top-1 vs labelled images, one curve "
                             f"per pretraining size; supervised from scratch dashed"))
    return out


# ---------------------------------------------------------------- Fig. 4
@figures_for("fig4")
def fig4_figures(settings: List[QualitySetting], paper: PaperBook, problems: List[Problem]) -> List[FigureOut]:
    out = []
    for s in settings:
        fig, ax = new_axes(max(6.0, 1.3 * len(s.corruptions) + 2), 4.0)
        n = len(s.methods)
        width = 0.8 / max(n, 1)
        xs = list(range(len(s.corruptions)))
        refs_x, refs_y = [], []
        for i, m in enumerate(s.methods):
            offset = (i - (n - 1) / 2) * width
            heights = []
            for j, c in enumerate(s.corruptions):
                d = s.deltas.get((c, m))
                value = d.value if d is not None else None
                heights.append(math.nan if value is None else value)
                cond = paper_condition(c)
                ref = paper.find("fig4", metric="delta_top1", **key_fields(d.corrupted.key, corruption=cond)) \
                    if d is not None and cond else None
                if ref is not None:
                    refs_x.append(xs[j] + offset)
                    refs_y.append(ref.value)
            ax.bar([x + offset for x in xs], heights, width, label=method_name(m), color=METHOD_COLORS.get(m))
        if refs_x:
            ax.plot(refs_x, refs_y, linestyle="none", marker="x", color="black", markersize=8, label=PAPER_LABEL)
        ax.axhline(0.0, color="black", linewidth=0.8)
        labels = [f"{CONDITION_NAMES[paper_condition(c)]}\n{c}" if paper_condition(c) else c for c in s.corruptions]
        ax.set_xticks(xs, labels=labels, rotation=15, ha="right", fontsize="small")
        ax.set_ylabel("Δ top-1 (corrupted - clean)")
        ax.set_title(f"{dataset_name(s.dataset)} {size_name(s.size)} -> {dataset_name(s.eval_dataset)}, "
                     f"{budget_name(s.budget)} labels")
        ax.legend(fontsize="small")
        kind = None if s.kind == "linear" else s.kind
        out.append(FigureOut(f"{slug('fig4', s.dataset, size_name(s.size), s.eval_dataset, budget_name(s.budget), kind)}.png",
                             fig, "Fig. 4: Δ top-1 of each pretraining method per corruption of its pretraining "
                                  "images"))
    return out


# ---------------------------------------------------------------- Fig. 5
@figures_for("fig5")
def fig5_figures(settings: List[GranularitySetting], paper: PaperBook, problems: List[Problem]) -> List[FigureOut]:
    out = []
    for s in settings:
        if not s.levels:
            continue
        fig, ax = new_axes()
        xs = list(range(len(s.levels)))
        refs_x, refs_y = [], []
        for m, c in s.cells.items():
            if c.conflict:
                continue
            ax.plot(xs, [c.levels.get(lv, math.nan) for lv in s.levels], marker="o", label=method_name(m),
                    color=METHOD_COLORS.get(m))
            for x, lv in zip(xs, s.levels):
                ref = paper.find("fig5", **key_fields(c.key, level=lv)) if lv in c.levels else None
                if ref is not None:
                    refs_x.append(x)
                    refs_y.append(ref.value)
        if not ax.lines:                 # every method's cell is a conflict: table only
            continue
        if refs_x:
            ax.plot(refs_x, refs_y, linestyle="none", marker="x", color="black", markersize=8, label=PAPER_LABEL)
        ax.set_xticks(xs, labels=s.levels)
        ax.set_xlabel("hierarchy level (coarse -> fine)")
        ax.set_ylabel("top-1")
        k = s.key
        ax.set_title(f"{dataset_name(k.dataset)} {size_name(k.size)} -> {dataset_name(k.eval_dataset)}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        name = slug("fig5", k.dataset, size_name(k.size), "+".join(k.pool), None if k.corruption == "none" else
                    k.corruption, k.eval_dataset, budget_name(k.budget))
        out.append(FigureOut(f"{name}.png",
                             fig, "Fig. 5: top-1 per level of the label hierarchy"))
    return out
