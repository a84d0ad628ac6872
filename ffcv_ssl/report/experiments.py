"""Which cells each experiment of the paper uses and how they line up: pure data, no formatting.

One selector per experiment, registered in ``EXPERIMENTS`` in report order. A selector returns None (or an
empty list) when the runs hold nothing for its experiment, so the report leaves that section out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .collect import BackboneKey, Cell, CellKey, Collection
from .names import by_count, dataset_order
from .paper import PaperBook

SSL_METHODS = ("simclr", "byol", "moco")
# Linear probes of a frozen backbone: our cached-feature probe and SimCLR's augmented 90-epoch protocol. Each
# experiment shows one table per protocol, never mixing them, and names the protocol (tables.protocol_note).
PROBES = ("linear", "reference_linear")


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    select: Callable[[Collection, PaperBook], object]


EXPERIMENTS: Dict[str, Experiment] = {}


def experiment(name: str, title: str):
    """Register a selector; the report renders experiments in registration order."""
    def wrap(fn: Callable[[Collection, PaperBook], object]):
        if name in EXPERIMENTS:
            raise KeyError(f"experiment {name!r} registered twice")
        EXPERIMENTS[name] = Experiment(name, title, fn)
        return fn
    return wrap


def _plain(key: CellKey) -> bool:
    """Clean images, one backbone of one dataset, the default label: what most tables compare."""
    return key.corruption == "none" and not key.pool and not key.concat and key.label_level == "label"


def _best(counts: Dict[Optional[int], int]) -> Optional[int]:
    """The value covering most cells; ties go to the largest (``None`` = all images is the largest)."""
    return max(counts, key=lambda v: (counts[v], by_count(v)))


# ---------------------------------------------------------------- Fig. 2: quantity
@dataclass
class Fig2Panel:
    kind: str                                   # linear or finetune
    eval_dataset: str
    sizes: List[Optional[int]]
    budgets: List[Optional[int]]
    simclr: Dict[Tuple[Optional[int], Optional[int]], Cell]   # (size, budget) -> cell
    scratch: Dict[Optional[int], Cell]                         # budget -> cell


@experiment("fig2", "Fig. 2: data quantity (top-1 vs labelled images)")
def select_fig2(col: Collection, paper: PaperBook) -> List[Fig2Panel]:
    """SimCLR pretrained and evaluated on the same dataset (clean images), linear probe and fine-tuning, one curve
    per pretraining size, with supervised training from scratch on the same label budgets.
    """
    panels = []
    for kind in (*PROBES, "finetune"):
        cells = [c for k, c in col.cells.items() if k.kind == kind and k.method == "simclr" and _plain(k)
                 and k.dataset == k.eval_dataset]
        for ds in dataset_order(c.key.eval_dataset for c in cells):
            mine = {(c.key.size, c.key.budget): c for c in cells if c.key.eval_dataset == ds}
            # method 'none' is the canonical scratch run; it wins if another method also claims scratch
            scratch = {k.budget: c for k, c in sorted(col.cells.items(), key=lambda kc: kc[0].method == "none")
                       if k.kind == "scratch" and k.eval_dataset == ds and k.label_level == "label"
                       and not k.concat}
            if len({b for _, b in mine}) < 2:      # one label budget is a point, not a curve: other tables show it
                continue
            budgets = sorted({b for _, b in mine} | set(scratch), key=by_count)
            panels.append(Fig2Panel(kind, ds, sorted({s for s, _ in mine}, key=by_count), budgets, mine,
                                    scratch))
    return panels


# ---------------------------------------------------------------- Fig. 3: methods side by side
SCRATCH = "scratch"        # the row of supervised training from scratch in a MethodGroup


@dataclass
class MethodGroup:
    dataset: str
    size: Optional[int]
    kind: str                                   # the probe protocol of the pretrained methods
    budgets: List[Optional[int]]
    cells: Dict[str, Dict[Optional[int], Cell]]   # method (or SCRATCH) -> budget -> cell


@experiment("fig3", "Fig. 3: pretraining methods compared")
def select_fig3(col: Collection, paper: PaperBook) -> List[MethodGroup]:
    """Linear probes of different pretraining methods (SimCLR, BYOL, MoCo, supervised) with the same in-domain
    pretraining set, at every label budget, beside supervised training from scratch on the same labels (the
    paper's "Supervised" of Fig. 3).
    """
    groups: Dict[tuple, Dict[str, Dict[Optional[int], Cell]]] = {}
    for k, c in col.cells.items():
        if k.kind in PROBES and _plain(k) and k.dataset == k.eval_dataset and k.method in (*SSL_METHODS,
                                                                                              "supervised"):
            groups.setdefault((k.dataset, k.size, k.kind), {}).setdefault(k.method, {})[k.budget] = c
    order = ("supervised", *SSL_METHODS)
    out = []
    for (ds, size, kind), cells in sorted(groups.items(), key=lambda g: (g[0][0], by_count(g[0][1]), g[0][2])):
        if len(cells) < 2:
            continue
        budgets = {b for per in cells.values() for b in per}
        scratch = {k.budget: c for k, c in col.cells.items() if k.kind == "scratch" and k.eval_dataset == ds
                   and k.label_level == "label" and not k.concat and k.budget in budgets}
        rows = {SCRATCH: scratch} if scratch else {}
        rows.update({m: cells[m] for m in order if m in cells})
        out.append(MethodGroup(ds, size, kind, sorted(budgets, key=by_count), rows))
    return out


# ---------------------------------------------------------------- Table 1: cross-domain
@dataclass
class Matrix:
    method: str
    rows: List[str]                             # pretraining datasets
    cols: List[str]                             # evaluation datasets
    sizes: Dict[str, Optional[int]]             # pretraining size used for each row
    budgets: Dict[str, Optional[int]]           # label budget used for each column
    cells: Dict[Tuple[str, str], Cell] = field(default_factory=dict)
    kind: str = "linear"                        # probe protocol
    # the paper's "Supervised (All Images)" row: in-domain supervised backbone per column (largest pretraining
    # set, i.e. the full training split where it was run), shown under a self-supervised matrix
    supervised: Dict[str, Cell] = field(default_factory=dict)


@experiment("table1", "Table 1: cross-domain linear evaluation")
def select_table1(col: Collection, paper: PaperBook) -> List[Matrix]:
    """Linear probes of backbones pretrained on one dataset and evaluated on another: one matrix per method with
    cross-domain results; per row the pretraining size and per column the label budget that cover most cells
    (ties: the largest).
    """
    matrices = []
    for kind, method in ((kind, method) for kind in PROBES for method in ("simclr", "supervised", "byol", "moco")):
        cand = [c for k, c in col.cells.items() if k.kind == kind and k.method == method and _plain(k)
                and k.dataset not in ("", "pool")]
        cross = [c for c in cand if c.key.dataset != c.key.eval_dataset]
        if not cross:
            continue
        names = dataset_order({c.key.dataset for c in cross} | {c.key.eval_dataset for c in cross})
        cand = [c for c in cand if c.key.dataset in names and c.key.eval_dataset in names]
        sizes = {}
        for row in names:
            counts: Dict[Optional[int], int] = {}
            for s in {c.key.size for c in cand if c.key.dataset == row}:
                counts[s] = len({c.key.eval_dataset for c in cand if c.key.dataset == row and c.key.size == s})
            if counts:
                sizes[row] = _best(counts)
        rows = [r for r in names if r in sizes]
        budgets = {}
        for ev in names:
            counts = {}
            for c in cand:
                if c.key.eval_dataset == ev and sizes.get(c.key.dataset, -1) == c.key.size:
                    counts[c.key.budget] = counts.get(c.key.budget, 0) + 1
            if counts:
                budgets[ev] = _best(counts)
        cols = [e for e in names if e in budgets]
        m = Matrix(method, rows, cols, sizes, budgets, kind=kind)
        for c in cand:
            k = c.key
            if k.size == sizes.get(k.dataset, -1) and k.eval_dataset in budgets and k.budget == budgets[k.eval_dataset]:
                m.cells[(k.dataset, k.eval_dataset)] = c
        if method in SSL_METHODS:
            for ev in cols:
                sup = [c for k, c in col.cells.items() if k.kind == kind and k.method == "supervised" and _plain(k)
                       and k.dataset == ev and k.eval_dataset == ev and k.budget == budgets[ev]]
                if sup:
                    m.supervised[ev] = max(sup, key=lambda c: by_count(c.key.size))
        matrices.append(m)
    return matrices


# ---------------------------------------------------------------- Table 2: pooling
@dataclass(frozen=True)
class PoolRow:
    pool: Tuple[str, ...]                       # () = in-domain (pretrained on the column's dataset)
    size: Optional[int]


@dataclass
class Pooling:
    method: str
    cols: List[str]
    budgets: Dict[str, Optional[int]]
    rows: List[PoolRow]
    cells: Dict[Tuple[PoolRow, str], Cell] = field(default_factory=dict)
    kind: str = "linear"                        # probe protocol


@experiment("table2", "Table 2: pooled vs in-domain pretraining")
def select_table2(col: Collection, paper: PaperBook) -> List[Pooling]:
    """Linear probes of backbones pretrained on pools of several datasets next to in-domain pretraining of each
    size, per evaluation dataset (label budget per column: the one covering most cells).
    """
    out = []
    for kind, method in ((kind, method) for kind in PROBES for method in ("simclr", "supervised", "byol", "moco")):
        base = [c for k, c in col.cells.items() if k.kind == kind and k.method == method
                and k.corruption == "none" and not k.concat and k.label_level == "label"]
        pools = [c for c in base if c.key.pool]
        if not pools:
            continue
        cols = dataset_order({c.key.eval_dataset for c in pools})
        indomain = [c for c in base if not c.key.pool and c.key.dataset == c.key.eval_dataset
                    and c.key.eval_dataset in cols]
        budgets = {}
        for ev in cols:
            counts: Dict[Optional[int], int] = {}
            for c in pools + indomain:
                if c.key.eval_dataset == ev:
                    counts[c.key.budget] = counts.get(c.key.budget, 0) + 1
            budgets[ev] = _best(counts)
        table = Pooling(method, cols, budgets, [], kind=kind)
        for c in pools + indomain:
            k = c.key
            if k.eval_dataset in budgets and k.budget == budgets[k.eval_dataset]:
                table.cells[(PoolRow(k.pool, k.size), k.eval_dataset)] = c
        rows = {r for r, _ in table.cells}
        table.rows = sorted(rows, key=lambda r: (bool(r.pool), len(r.pool), by_count(r.size), r.pool))
        out.append(table)
    return out


# ---------------------------------------------------------------- Table 3: concatenation
@dataclass
class ConcatRow:
    cell: Cell
    singles: List[Tuple[BackboneKey, Optional[Cell]]]


@experiment("table3", "Table 3: concatenated representations")
def select_table3(col: Collection, paper: PaperBook) -> List[ConcatRow]:
    """Linear probes on concatenated frozen features of two or more backbones, next to each backbone alone (same
    evaluation and label budget).
    """
    rows = []
    for k, c in sorted(col.cells.items(), key=lambda kc: kc[0].describe()):
        if not k.concat:
            continue
        singles = []
        for method, dataset, size, corruption, pool in (k.backbone, *k.concat):
            single = k.replace(method=method, dataset=dataset, size=size, corruption=corruption, pool=pool,
                               concat=())
            singles.append(((method, dataset, size, corruption, pool), col.get(single)))
        rows.append(ConcatRow(c, singles))
    return rows


# ---------------------------------------------------------------- Fig. 4: quality
Step = Tuple[str, Dict[str, Any]]


def corruption_steps(text: str) -> List[Step]:
    """``resize:size=256+downsample:factor=4,size=256`` -> [(resize, {size: 256}), (downsample, {...})].

    Parsed by the writers' own spec parser (presets expand, defaults fill in), so the report reads a
    corruption exactly as it was written. Text that parser rejects (a corruption this version does not
    know) is one opaque step: it maps to no paper condition instead of failing the report.
    """
    from dataset_writers.corruptions.spec import parse_corruptions
    from dataset_writers.errors import WriterError

    if text.strip() in ("", "none"):
        return []
    try:
        return [(spec.name, spec.params.as_dict()) for spec in parse_corruptions(text)]
    except WriterError:
        return [(text.strip(), {})]


def corruption_factor(params: Dict[str, Any]) -> Optional[float]:
    factor = params.get("factor")
    return None if factor is None else float(factor)


# Our corruption names -> the paper's condition (Fig. 4); a registry, so a new corruption maps in one line.
CONDITIONS: Dict[str, Callable[[Dict[str, Any]], Optional[str]]] = {
    "salt_pepper": lambda p: "salt_pepper",
    "jpeg": lambda p: "jpeg",
    "resize": lambda p: "resize",
    "downsample": lambda p: {2.0: "downsample_2x", 4.0: "downsample_4x"}.get(corruption_factor(p) or 0.0),
}
CONDITION_NAMES = {"salt_pepper": "salt & pepper", "jpeg": "JPEG", "resize": "resize",
                   "downsample_2x": "resize + 2x downsample", "downsample_4x": "resize + 4x downsample"}
RESOLUTION_CORRUPTIONS = ("downsample",)


def paper_condition(corruption: str) -> Optional[str]:
    """The paper's Fig. 4 condition our corruption reproduces, or None.

    The paper's conditions are "resize + ...", so a chain that starts with ``resize`` maps by its other step;
    any other chain has no paper condition.
    """
    steps = corruption_steps(corruption)
    while len(steps) > 1 and steps[0][0] == "resize":
        steps = steps[1:]
    if len(steps) != 1:
        return None
    rule = CONDITIONS.get(steps[0][0])
    return rule(steps[0][1]) if rule else None


def downsample_factor(corruption: str) -> Optional[float]:
    """The factor of a corruption's (only) downsampling step; None when it has none or several."""
    factors = [corruption_factor(p) for name, p in corruption_steps(corruption) if name in RESOLUTION_CORRUPTIONS]
    return factors[0] if len(factors) == 1 else None


def lowers_resolution(corruption: str) -> bool:
    return any(name in RESOLUTION_CORRUPTIONS for name, _ in corruption_steps(corruption))


def _corruption_order(corruption: str) -> tuple:
    """The paper's conditions first, in the order of its Fig. 4, then ours alphabetically."""
    cond = paper_condition(corruption)
    return (cond is None, list(CONDITION_NAMES).index(cond) if cond else 0, corruption)


@dataclass
class Delta:
    corrupted: Cell
    clean: Optional[Cell]

    @property
    def value(self) -> Optional[float]:
        if self.clean is None or self.corrupted.top1 is None or self.clean.top1 is None:
            return None
        return self.corrupted.top1 - self.clean.top1


@dataclass
class QualitySetting:
    dataset: str
    size: Optional[int]
    eval_dataset: str
    budget: Optional[int]
    kind: str                                   # probe protocol
    methods: List[str]
    corruptions: List[str]
    deltas: Dict[Tuple[str, str], Delta] = field(default_factory=dict)   # (corruption, method)


@experiment("fig4", "Fig. 4: data quality (corrupted pretraining images)")
def select_fig4(col: Collection, paper: PaperBook) -> List[QualitySetting]:
    """Linear probes (on clean images) of backbones pretrained on corrupted images, as Δ top-1 against the same
    method, data and budget pretrained on clean images.
    """
    settings: Dict[tuple, QualitySetting] = {}
    for k, c in sorted(col.cells.items(), key=lambda kc: kc[0].describe()):
        if k.kind not in PROBES or k.corruption == "none" or k.pool or k.concat or k.label_level != "label":
            continue
        sid = (k.dataset, k.size, k.eval_dataset, k.budget, k.kind)
        s = settings.setdefault(sid, QualitySetting(*sid, methods=[], corruptions=[]))
        s.deltas[(k.corruption, k.method)] = Delta(c, col.get(k.replace(corruption="none")))
        if k.method not in s.methods:
            s.methods.append(k.method)
        if k.corruption not in s.corruptions:
            s.corruptions.append(k.corruption)
    order = ("supervised", "simclr", "byol", "moco", "random")
    for s in settings.values():
        s.methods.sort(key=lambda m: order.index(m) if m in order else len(order))
        s.corruptions.sort(key=_corruption_order)
    return [settings[k] for k in sorted(settings, key=lambda s: (s[0], by_count(s[1]), s[2], by_count(s[3]), s[4]))]


# ---------------------------------------------------------------- Fig. 5: granularity
@dataclass
class GranularitySetting:
    key: CellKey                                # of the first method's cell (method is not meaningful)
    levels: List[str]
    cells: Dict[str, Cell]                      # method -> cell


@experiment("fig5", "Fig. 5: task granularity (top-1 per hierarchy level)")
def select_fig5(col: Collection, paper: PaperBook) -> List[GranularitySetting]:
    """Hierarchical evaluations: a classifier trained at the finest label, its predictions mapped up the label
    hierarchy, top-1 per level for each pretraining method.
    """
    groups: Dict[CellKey, Dict[str, Cell]] = {}
    # methods are compared whatever their pretraining size (the paper: SimCLR on 1M, supervised on the full
    # split); a method with several sizes shows its largest
    for k, c in sorted(col.cells.items(), key=lambda kc: (kc[0].method != "simclr", kc[0].describe(),
                                                          by_count(kc[0].size))):
        if k.kind == "hierarchical" and (c.levels or c.conflict):
            groups.setdefault(k.replace(method="", size=None), {})[k.method] = c
    out = []
    for gkey, cells in groups.items():
        usable = [c for c in cells.values() if not c.conflict]
        levels = list(dict.fromkeys(lv for c in usable for lv in c.levels))   # every level any method reports
        known = list(paper.hierarchies.get(gkey.eval_dataset, []))
        if known and all(lv in known for lv in levels):
            levels.sort(key=known.index)
        elif levels and all(re.fullmatch(r"depth_\d+|label", lv) for lv in levels):   # WordNet depths, then leaves
            levels.sort(key=lambda lv: (lv == "label", int(lv[6:]) if lv != "label" else 0))
        first = next(iter(cells.values())).key
        out.append(GranularitySetting(first, levels, cells))
    return out


# ---------------------------------------------------------------- baselines: random backbone and kNN
@dataclass
class RandomRow:
    random: Cell
    simclr: Optional[Cell]


@dataclass
class Baselines:
    random: List[RandomRow]
    knn: List[Cell]


@experiment("baselines", "Baselines: untrained backbone and kNN")
def select_baselines(col: Collection, paper: PaperBook) -> Optional[Baselines]:
    """Evaluations of an untrained (randomly initialised) backbone next to the largest in-domain SimCLR backbone
    with the same evaluation, and every kNN evaluation.
    """
    rows = []
    for k, c in sorted(col.cells.items(), key=lambda kc: kc[0].describe()):
        if k.method != "random":
            continue
        peers = [p for pk, p in col.cells.items() if pk.method == "simclr" and pk.kind == k.kind
                 and pk.eval_dataset == k.eval_dataset and pk.budget == k.budget
                 and pk.label_level == k.label_level and _plain(pk) and pk.dataset == pk.eval_dataset]
        best = max(peers, key=lambda p: by_count(p.key.size)) if peers else None
        rows.append(RandomRow(c, best))
    knn = sorted((c for k, c in col.cells.items() if k.kind == "knn"), key=lambda c: c.key.describe())
    return Baselines(rows, knn) if rows or knn else None
