"""``ffcv-ssl report --paper-self-check``: the paper's own numbers, fed in as results, must pass the report.

Two things are checked on a runs folder made of the values in ``paper_values.yaml`` (one ``results.json`` per
cell, written with the project's own writer):

1. every direction check that has data holds on every instance: a check that fails on the paper's own numbers
   tests something the paper does not claim;
2. every paper value is shown beside a result in some table: a value no table looks up is keyed to a cell no
   sweep or experiment produces.

How values become results, where the paper leaves a setting open:
- a value keyed without ``size`` (the whole split, or unknown) becomes a result with ``size: null``;
- Fig. 4 deltas become a clean and a corrupted result on iNat21 (the quality sweep's default dataset; size
  left open like the paper's): the clean one is another table's where the cell exists, else 0.5 (only the
  difference is the paper's);
- Table 3 gains become a concatenated result = the in-domain backbone alone (Table 1) + the gain;
- Fig. 5 levels of one method and dataset become one hierarchical result (top-1 = its finest level);
- a cell that two tables give (e.g. Fig. 2's and Fig. 3's iNat21 1M SimCLR at 1M labels) is written once, with
  the first table's value (``paper.TABLES`` order); the other must then agree within its tolerance.
"""
from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..results import EvalInfo, PretrainInfo, Results, write_results
from .paper import TABLES, PaperBook, PaperValue
from .render import Report, build_report

PROTOCOL = "the paper's value (ffcv_ssl/data/paper_values.yaml), fed in by --paper-self-check"
QUALITY_SETTING = {"dataset": "inat21", "size": None, "eval_dataset": "inat21", "budget": None}
# official training-split sizes (the datasets' own READMEs), recorded as extra.n_train so that "all labels"
# can be plotted
SPLIT_SIZES = {"inat21": 2_686_843, "imagenet": 1_281_167, "places365": 1_803_460}
CORRUPTIONS = {"salt_pepper": "salt_pepper", "jpeg": "jpeg", "resize": "resize",
               "downsample_2x": "downsample:factor=2", "downsample_4x": "downsample:factor=4"}
Key = Tuple


@dataclass
class SelfCheck:
    report: Report
    failures: List[str] = field(default_factory=list)     # claim instances that do not hold
    unshown: List[PaperValue] = field(default_factory=list)
    disagreements: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.failures or self.unshown or self.disagreements)

    def lines(self) -> List[str]:
        r = self.report
        n_inst = sum(len(c.instances) for c in r.claims)
        out = [f"{len(r.paper.values)} paper values as {r.collection.n_files} results; {len(r.claims)} direction "
               f"checks, {n_inst} instances"]
        out += [f"FAILS on the paper's own values: {f}" for f in self.failures]
        out += [f"NOT SHOWN beside any result: {v.table} {v.source} {dict(v.cell)} = {v.value}" for v in self.unshown]
        out += [f"DISAGREES: {d}" for d in self.disagreements]
        return out


def _cell(v: PaperValue) -> Dict:
    return dict(v.cell)


def _results(method: str, dataset: str, size, eval_dataset: str, budget, top1: float, kind: str = "linear",
             corruption: str = "none", pool=(), concat=(), levels=None) -> Results:
    extra = {"n_train": SPLIT_SIZES[eval_dataset]} if budget is None and eval_dataset in SPLIT_SIZES else {}
    return Results(PretrainInfo(method=method, dataset=dataset, size=size, corruption=corruption, pool=list(pool)),
                   EvalInfo(kind=kind, dataset=eval_dataset, budget=budget, protocol=PROTOCOL),
                   {"top1": float(top1)}, levels=dict(levels or {}), concat=list(concat), extra=extra)


def _key(r: Results) -> Key:
    p, e = r.pretrain, r.eval
    return (e.kind, p.method, p.dataset, p.size, p.corruption, tuple(sorted(p.pool)),
            tuple((c.method, c.dataset, c.size) for c in r.concat), e.dataset, e.budget)


def paper_results(book: PaperBook) -> Tuple[List[Results], List[str]]:
    """The paper's values as results files (see the module doc), and cells two tables give different values."""
    by_key: Dict[Key, Tuple[Results, PaperValue]] = {}
    disagreements = []

    def put(r: Results, v: PaperValue) -> None:
        k = _key(r)
        if k in by_key:
            first, fv = by_key[k]
            if abs(first.metrics["top1"] - r.metrics["top1"]) > max(v.tolerance, fv.tolerance):
                disagreements.append(f"{fv.source} {fv.value} vs {v.source} {v.value} for {dict(v.cell)}")
            return
        by_key[k] = (r, v)

    values = sorted(book.values, key=lambda v: TABLES.index(v.table))
    for v in values:                                   # plain top-1 cells
        c = _cell(v)
        if v.metric != "top1" or c.get("kind") == "hierarchical":
            continue
        if c["kind"] == "scratch":
            put(_results("none", "", None, c["eval_dataset"], c.get("budget"), v.value, kind="scratch"), v)
        else:
            put(_results(c["method"], c["dataset"], c.get("size"), c["eval_dataset"], c.get("budget"), v.value,
                         kind=c["kind"], pool=c.get("pool", ())), v)
    levels: Dict[Tuple[str, str], Dict[str, float]] = {}
    for v in values:                                   # Fig. 5: one result per method and dataset
        c = _cell(v)
        if c.get("kind") == "hierarchical":
            levels.setdefault((c["method"], c["dataset"]), {})[c["level"]] = v.value
    for (method, dataset), lv in levels.items():
        put(_results(method, dataset, None, dataset, None, list(lv.values())[-1], kind="hierarchical", levels=lv),
            next(v for v in values if _cell(v).get("kind") == "hierarchical" and _cell(v)["method"] == method))
    for v in values:                                   # Fig. 4: clean + corrupted
        c = _cell(v)
        if v.metric != "delta_top1":
            continue
        s = QUALITY_SETTING
        clean = _results(c["method"], s["dataset"], s["size"], s["eval_dataset"], s["budget"], 0.5)
        base = by_key.get(_key(clean))
        if base is None:
            put(clean, v)
        top = (base[0] if base else clean).metrics["top1"]
        if not 0.0 <= top + v.value <= 1.0:
            disagreements.append(f"{v.source}: delta {v.value} from a clean {top} is not a top-1 ({dict(v.cell)})")
            continue
        put(_results(c["method"], s["dataset"], s["size"], s["eval_dataset"], s["budget"], top + v.value,
                     corruption=CORRUPTIONS[c["corruption"]]), v)
    for v in values:                                   # Table 3: in-domain alone + gain
        c = _cell(v)
        if v.metric != "gain_top1":
            continue
        ev = c["eval_dataset"]
        alone = [r for r, _ in by_key.values() if r.eval.kind == "linear" and r.pretrain.dataset == ev
                 and r.eval.dataset == ev and r.pretrain.method in ("simclr", "byol", "moco") and not r.concat
                 and r.eval.budget is None and r.pretrain.corruption == "none" and not r.pretrain.pool]
        if not alone:
            disagreements.append(f"{v.source}: no in-domain value to add the gain {v.value} to ({dict(v.cell)})")
            continue
        base = max(alone, key=lambda r: r.pretrain.size or 0)
        concat = [PretrainInfo(method=b["method"], dataset=b["dataset"], size=b.get("size")) for b in
                  (dict(x) for x in c["concat"])]
        put(_results(c["method"], c["dataset"], c.get("size"), ev, None, base.metrics["top1"] + v.value,
                     concat=concat), v)
    return [r for r, _ in by_key.values()], disagreements


def run_self_check(book: PaperBook, runs_dir: Optional[Path] = None) -> SelfCheck:
    """Write the paper's values as results under ``runs_dir`` (default: a temporary folder) and check them."""
    book = dataclasses.replace(book, shown=set())      # count only this report's look-ups
    results, disagreements = paper_results(book)
    with tempfile.TemporaryDirectory(prefix="ffcv-ssl-self-check-") as tmp:
        runs = Path(runs_dir) if runs_dir is not None else Path(tmp)
        for i, r in enumerate(results):
            write_results(r, runs / f"paper{i:04d}" / "results.json")
        report = build_report(runs, book)
    failures = [f"[{c.claim.source}] {c.claim.statement}: {i.label} {i.detail}".strip()
                for c in report.claims for i in c.instances if not (i.testable and i.holds)]
    return SelfCheck(report, failures, book.unshown(), disagreements)
