"""Does the paper's *direction* hold in our results? One checker per finding, registered by claim id.

A checker receives its experiment's selected data and returns one ``Instance`` per place the finding can
be tested (a dataset, a corruption, a matrix column, ...). The claim texts and the paper's numbers live in
``paper_values.yaml`` under the same ids; ``tests/test_report.py`` checks that both sides agree.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .experiments import (PROBES, SCRATCH, SSL_METHODS, Baselines, ConcatRow, Fig2Panel, GranularitySetting,
                          Matrix, MethodGroup, PoolRow, Pooling, QualitySetting, downsample_factor,
                          lowers_resolution)
from .names import budget_name, dataset_name, method_name, pool_name, sign_text, size_name
from .paper import Claim, PaperBook
from .scope import DataFacts, untestable_reason

NEAR = 0.01      # "within 1 pt": our operationalisation where the paper says "meets" or "little gain"
REDUNDANT = 0.02  # Table 3: "largely redundant" = |gain| < 2 pts; "complements" = gain >= 2 pts (paper: +1.4 / +4.7)


@dataclass(frozen=True)
class Instance:
    """One place a finding is tested. ``datasets``: the evaluation datasets it rests on, whose facts (image size,
    classes) decide whether this study can test the finding there (``scope.py``); ``why`` is set when it cannot.
    """

    label: str
    holds: bool
    detail: str = ""
    datasets: Tuple[str, ...] = ()
    why: str = ""

    @property
    def testable(self) -> bool:
        return not self.why


@dataclass(frozen=True)
class ClaimCheck:
    id: str
    experiment: str
    check: Callable[[object], List[Instance]]


@dataclass
class ClaimResult:
    claim: Claim
    instances: List[Instance]

    @property
    def tested(self) -> List[Instance]:
        return [i for i in self.instances if i.testable]

    @property
    def held(self) -> int:
        return sum(i.holds for i in self.tested)

    @property
    def verdict(self) -> str:
        if not self.tested:
            return "not testable here"
        if self.held == len(self.tested):
            return "holds"
        return "partly holds" if self.held else "does not hold"

    def line(self) -> str:
        """``in-domain ... column: partly holds (1/2; fails: supervised/ImageNet 0.61 vs 0.66)``; a finding this
        study cannot test reads ``not testable here`` with the reason, never as a pass or a failure."""
        untested = [i for i in self.instances if not i.testable]
        reasons = "; ".join(dict.fromkeys(i.why for i in untested))
        if not self.tested:
            return (f"{self.claim.statement}: **not testable here** ({reasons}; our values, for information: "
                    + "; ".join(f"{i.label} {i.detail}".strip() for i in untested)
                    + f") [paper, {self.claim.source}: {self.claim.paper}]")
        text = f"{self.claim.statement}: **{self.verdict}** ({self.held}/{len(self.tested)}"
        fails = [f"{i.label} {i.detail}".strip() for i in self.tested if not i.holds]
        if fails:
            text += "; fails: " + "; ".join(fails)
        if untested:
            text += f"; {len(untested)} not testable here: {reasons}"
        return text + f") [paper, {self.claim.source}: {self.claim.paper}]"


CLAIMS: Dict[str, ClaimCheck] = {}


def claim(claim_id: str, experiment: str):
    def wrap(fn: Callable[[object], List[Instance]]):
        if claim_id in CLAIMS:
            raise KeyError(f"claim {claim_id!r} registered twice")
        CLAIMS[claim_id] = ClaimCheck(claim_id, experiment, fn)
        return fn
    return wrap


def check_claims(experiment: str, data: object, paper: PaperBook,
                 facts: Optional[Dict[str, DataFacts]] = None) -> List[ClaimResult]:
    """Every registered claim of ``experiment`` that has data in ``data`` (at least one instance); an instance
    whose datasets cannot test the claim (``scope.untestable_reason`` on ``facts``) is marked, not judged."""
    out = []
    for cid, check in CLAIMS.items():
        if check.experiment != experiment:
            continue
        instances = []
        for inst in check.check(data):
            why = next(filter(None, (untestable_reason(cid, (facts or {}).get(d)) for d in inst.datasets)), "")
            instances.append(replace(inst, why=why) if why else inst)
        if instances:
            text = paper.claims.get(cid) or Claim(cid, cid, "(no paper text for this claim)", "?")
            out.append(ClaimResult(text, instances))
    return out


def _vs(a: float, b: float) -> str:
    return f"({a:.3f} vs {b:.3f})"


# ---------------------------------------------------------------- Fig. 2
def _top1(panel: Fig2Panel, size, budget) -> Optional[float]:
    cell = panel.simclr.get((size, budget))
    return cell.top1 if cell else None


def _largest_budget_with(panel: Fig2Panel, sizes: Sequence) -> Optional[Tuple]:
    for b in reversed(panel.budgets):
        values = [_top1(panel, s, b) for s in sizes]
        if all(v is not None for v in values):
            return b, values
    return None


@claim("quantity.more_data_helps", "fig2")
def _more_data(panels: List[Fig2Panel]) -> List[Instance]:
    out = []
    for p in panels:
        if p.kind not in PROBES or len(p.sizes) < 2:
            continue
        found = _largest_budget_with(p, [p.sizes[0], p.sizes[-1]])
        if found:
            b, (small, large) = found
            out.append(Instance(f"{dataset_name(p.eval_dataset)} ({size_name(p.sizes[0])} -> "
                                f"{size_name(p.sizes[-1])}, {budget_name(b)} labels)", large > small,
                                _vs(large, small)))
    return out


@claim("quantity.diminishing_returns", "fig2")
def _diminishing(panels: List[Fig2Panel]) -> List[Instance]:
    out = []
    for p in panels:
        if p.kind not in PROBES or len(p.sizes) < 3:
            continue
        found = _largest_budget_with(p, [p.sizes[0], p.sizes[-2], p.sizes[-1]])
        if found:
            b, (first, before, last) = found
            gain_last, gain_before = last - before, before - first
            out.append(Instance(f"{dataset_name(p.eval_dataset)} ({budget_name(b)} labels)", gain_last < gain_before,
                                f"(last step {sign_text(gain_last)} vs earlier {sign_text(gain_before)})"))
    return out


def _vs_scratch(p: Fig2Panel, budgets: Sequence) -> Optional[Tuple]:
    """First budget (in the given order) with scratch and a SimCLR value (its largest size there)."""
    for b in budgets:
        scratch = p.scratch.get(b)
        ours = [(s, _top1(p, s, b)) for s in p.sizes if _top1(p, s, b) is not None]
        if scratch is not None and scratch.top1 is not None and ours:
            return b, ours[-1][1], scratch.top1
    return None


@claim("quantity.linear_below_scratch", "fig2")
def _linear_below_scratch(panels: List[Fig2Panel]) -> List[Instance]:
    out = []
    for p in panels:
        found = _vs_scratch(p, list(reversed(p.budgets))) if p.kind in PROBES else None
        if found:
            b, ours, scratch = found
            out.append(Instance(f"{dataset_name(p.eval_dataset)} ({budget_name(b)} labels)", ours < scratch,
                                _vs(ours, scratch)))
    return out


@claim("quantity.finetune_beats_scratch_few_labels", "fig2")
def _finetune_few(panels: List[Fig2Panel]) -> List[Instance]:
    out = []
    for p in panels:
        found = _vs_scratch(p, p.budgets) if p.kind == "finetune" else None
        if found:
            b, ours, scratch = found
            out.append(Instance(f"{dataset_name(p.eval_dataset)} ({budget_name(b)} labels)", ours > scratch,
                                _vs(ours, scratch)))
    return out


@claim("quantity.finetune_meets_scratch_many_labels", "fig2")
def _finetune_many(panels: List[Fig2Panel]) -> List[Instance]:
    out = []
    for p in panels:
        found = _vs_scratch(p, list(reversed(p.budgets))) if p.kind == "finetune" else None
        if found:
            b, ours, scratch = found
            out.append(Instance(f"{dataset_name(p.eval_dataset)} ({budget_name(b)} labels)",
                                ours >= scratch - NEAR, _vs(ours, scratch)))
    return out


# ---------------------------------------------------------------- Fig. 3
@claim("methods.supervised_beats_ssl", "fig3")
def _supervised_beats_ssl(groups: List[MethodGroup]) -> List[Instance]:
    """At the largest budget with a supervised value (from scratch, else a probe of a supervised backbone)."""
    out = []
    for g in groups:
        for b in reversed(g.budgets):
            scratch = g.cells.get(SCRATCH, {}).get(b)
            ref = scratch or g.cells.get("supervised", {}).get(b)
            what = "" if scratch else ", supervised probe: no scratch run"
            ssl = [(m, g.cells[m][b]) for m in SSL_METHODS if b in g.cells.get(m, {})
                   and g.cells[m][b].top1 is not None]
            if ref is None or ref.top1 is None or not ssl:
                continue
            for m, other in ssl:
                out.append(Instance(f"{method_name(m)} {dataset_name(g.dataset)} {size_name(g.size)} "
                                    f"({budget_name(b)} labels{what})", ref.top1 > other.top1,
                                    _vs(ref.top1, other.top1)))
            break
    return out


# ---------------------------------------------------------------- Table 1
@claim("domain.in_domain_best", "table1")
def _in_domain_best(matrices: List[Matrix]) -> List[Instance]:
    out = []
    for m in matrices:
        if m.method not in SSL_METHODS:     # the paper has no supervised cross-domain cell to check against
            continue
        for ev in m.cols:
            diag = m.cells.get((ev, ev))
            off = [(r, m.cells[(r, ev)].top1) for r in m.rows if r != ev and (r, ev) in m.cells
                   and m.cells[(r, ev)].top1 is not None]
            if diag is None or diag.top1 is None or not off:
                continue
            best_row, best = max(off, key=lambda rv: rv[1])
            out.append(Instance(f"{method_name(m.method)} on {dataset_name(ev)}", diag.top1 > best,
                                f"(in-domain {diag.top1:.3f} vs {dataset_name(best_row)} {best:.3f})"))
    return out


# ---------------------------------------------------------------- Table 2
SHARE_WAYS = 4    # the paper's "below its own share" is about the 4-way pool; its 2-way pools do not all hold it


def _pool_vs(tables: List[Pooling], share: bool) -> List[Instance]:
    """Same size: every evaluation column, in or out of the pool. Own share: 4-way pools, their own datasets."""
    out = []
    for t in tables:
        for row in t.rows:
            if not row.pool or row.size is None:
                continue
            if share and (row.size % len(row.pool) or len(row.pool) < SHARE_WAYS):
                continue
            ref_size = row.size // len(row.pool) if share else row.size
            for ev in t.cols:
                pooled, alone = t.cells.get((row, ev)), t.cells.get((PoolRow((), ref_size), ev))
                if (share and ev not in row.pool) or pooled is None or alone is None \
                        or None in (pooled.top1, alone.top1):
                    continue
                out.append(Instance(f"pool({pool_name(row.pool)}) {size_name(row.size)} on {dataset_name(ev)} vs "
                                    f"in-domain {size_name(ref_size)}", pooled.top1 < alone.top1,
                                    _vs(pooled.top1, alone.top1)))
    return out


@claim("pooling.below_same_size_in_domain", "table2")
def _pool_same_size(tables: List[Pooling]) -> List[Instance]:
    return _pool_vs(tables, share=False)


@claim("pooling.below_own_share", "table2")
def _pool_share(tables: List[Pooling]) -> List[Instance]:
    return _pool_vs(tables, share=True)


# ---------------------------------------------------------------- Table 3
def concat_gain(r: ConcatRow) -> Optional[Tuple[float, str]]:
    """(concatenated minus the in-domain self-supervised backbone alone, that backbone's method), or None."""
    ev = r.cell.key.eval_dataset
    inside = [(c.top1, method) for (method, dataset, *_), c in r.singles if dataset == ev and method in SSL_METHODS
              and c is not None and c.top1 is not None]
    if r.cell.top1 is None or not inside:
        return None
    alone, method = max(inside)
    return r.cell.top1 - alone, method


def _concat(rows: List[ConcatRow], with_supervised: bool) -> List[Instance]:
    out = []
    for r in rows:
        methods = [b[0] for b, _ in r.singles]
        if ("supervised" in methods) != with_supervised or not all(m in (*SSL_METHODS, "supervised")
                                                                    for m in methods):
            continue
        found = concat_gain(r)
        if found is None:
            continue
        gain = found[0]
        holds = gain >= REDUNDANT if with_supervised else abs(gain) < REDUNDANT
        out.append(Instance(r.cell.key.describe(), holds, f"(gain vs in-domain alone {sign_text(gain)})"))
    return out


@claim("concat.ssl_pair_redundant", "table3")
def _concat_ssl(rows: List[ConcatRow]) -> List[Instance]:
    return _concat(rows, with_supervised=False)


@claim("concat.supervised_complements", "table3")
def _concat_supervised(rows: List[ConcatRow]) -> List[Instance]:
    return _concat(rows, with_supervised=True)


# ---------------------------------------------------------------- Fig. 4
def _setting_label(s: QualitySetting) -> str:
    kind = "" if s.kind == "linear" else f", {s.kind}"
    return (f"{dataset_name(s.dataset)} {size_name(s.size)} -> {dataset_name(s.eval_dataset)}, "
            f"{budget_name(s.budget)} labels{kind}")


def simclr_deltas(s: QualitySetting) -> List[Tuple[str, float]]:
    d = [(c, s.deltas[(c, "simclr")].value) for c in s.corruptions if (c, "simclr") in s.deltas]
    return [(c, v) for c, v in d if v is not None]


@claim("quality.simclr_more_sensitive", "fig4")
def _simclr_sensitive(settings: List[QualitySetting]) -> List[Instance]:
    out = []
    for s in settings:
        for c in s.corruptions:
            a, b = s.deltas.get((c, "simclr")), s.deltas.get((c, "supervised"))
            if a is None or b is None or a.value is None or b.value is None:
                continue
            out.append(Instance(f"{c} ({_setting_label(s)})", a.value < b.value,
                                f"(SimCLR {sign_text(a.value)} vs supervised {sign_text(b.value)})",
                                datasets=(s.dataset, s.eval_dataset)))
    return out


@claim("quality.downsampling_hurts_simclr_most", "fig4")
def _downsampling_worst(settings: List[QualitySetting]) -> List[Instance]:
    out = []
    for s in settings:
        deltas = simclr_deltas(s)
        if len(deltas) < 2 or not any(lowers_resolution(c) for c, _ in deltas):
            continue
        worst, value = min(deltas, key=lambda cv: cv[1])
        out.append(Instance(_setting_label(s), lowers_resolution(worst),
                            f"(worst: {worst} {sign_text(value)})", datasets=(s.dataset, s.eval_dataset)))
    return out


@claim("quality.stronger_downsampling_hurts_more", "fig4")
def _stronger_worse(settings: List[QualitySetting]) -> List[Instance]:
    out = []
    for s in settings:
        by_factor = {}
        for c, v in simclr_deltas(s):
            if downsample_factor(c):
                by_factor[downsample_factor(c)] = v
        if len(by_factor) < 2:
            continue
        factors = sorted(by_factor)
        values = [by_factor[f] for f in factors]
        out.append(Instance(_setting_label(s), all(a > b for a, b in zip(values, values[1:])),
                            "(" + ", ".join(f"{f:g}x {sign_text(v)}" for f, v in zip(factors, values)) + ")",
                            datasets=(s.dataset, s.eval_dataset)))
    return out


# ---------------------------------------------------------------- Fig. 5
def _gaps(s: GranularitySetting) -> Optional[Tuple[float, float, float, float]]:
    sim, sup = s.cells.get("simclr"), s.cells.get("supervised")
    if sim is None or sup is None or sim.conflict or sup.conflict:
        return None
    common = [lv for lv in s.levels if lv in sim.levels and lv in sup.levels]   # coarse -> fine, both methods
    if not common:
        return None
    first, last = common[0], common[-1]
    return sup.levels[first], sim.levels[first], sup.levels[last], sim.levels[last]


@claim("granularity.gap_grows", "fig5")
def _gap_grows(settings: List[GranularitySetting]) -> List[Instance]:
    out = []
    for s in settings:
        g = _gaps(s)
        if g is None or len(s.levels) < 2:
            continue
        coarse, fine = g[0] - g[1], g[2] - g[3]
        out.append(Instance(f"{dataset_name(s.key.eval_dataset)} ({s.levels[0]} -> {s.levels[-1]})", fine > coarse,
                            f"(gap {sign_text(coarse)} -> {sign_text(fine)})", datasets=(s.key.eval_dataset,)))
    return out


@claim("granularity.supervised_wins_finest", "fig5")
def _supervised_finest(settings: List[GranularitySetting]) -> List[Instance]:
    out = []
    for s in settings:
        g = _gaps(s)
        if g is not None:
            out.append(Instance(f"{dataset_name(s.key.eval_dataset)} {s.levels[-1]}", g[2] > g[3], _vs(g[2], g[3]),
                                datasets=(s.key.eval_dataset,)))
    return out


# ---------------------------------------------------------------- baselines
@claim("baseline.simclr_beats_random", "baselines")
def _beats_random(data: Baselines) -> List[Instance]:
    out = []
    for row in data.random:
        r, s = row.random, row.simclr
        if s is None or r.top1 is None or s.top1 is None:
            continue
        k = r.key
        out.append(Instance(f"{k.kind} on {dataset_name(k.eval_dataset)} ({budget_name(k.budget)} labels)",
                            s.top1 > r.top1, _vs(s.top1, r.top1)))
    return out
