"""``report.md`` and its PNG figures: each experiment whose results exist, the paper's values beside ours,
whether the paper's direction holds, and every problem found on the way (never silently dropped)."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .claims import CLAIMS, ClaimResult, check_claims
from .collect import Collection, Problem, ReportError, collect
from .experiments import EXPERIMENTS
from ..files import atomic_write_text, save_figure
from .figures import FIGURES, FigureOut
from .names import by_count
from .paper import PaperBook, load_paper_values
from .scope import DataFacts, gather_facts
from .tables import TABLES, Block, Table, appendix_table

REPORT_NAME = "report.md"
PROBLEM_ORDER = ("unreadable", "unknown-schema", "invalid", "conflict", "duplicate", "missing", "unplotted")


@dataclass
class Section:
    name: str
    title: str
    about: str
    blocks: List[Block]
    figures: List[FigureOut]
    claims: List[ClaimResult]


@dataclass
class Report:
    collection: Collection
    paper: PaperBook
    sections: List[Section]
    problems: List[Problem]
    facts: Dict[str, DataFacts] = field(default_factory=dict)

    @property
    def claims(self) -> List[ClaimResult]:
        return [c for s in self.sections for c in s.claims]

    def section(self, name: str) -> Optional[Section]:
        return next((s for s in self.sections if s.name == name), None)


def build_report(runs_dir: os.PathLike | str, paper: Optional[PaperBook] = None) -> Report:
    """Collect the runs and build every section their results allow (nothing is written)."""
    paper = paper or load_paper_values()
    col = collect(runs_dir)
    problems: List[Problem] = list(col.problems)
    facts = gather_facts((c.key.eval_dataset, r.results.eval.train) for c in col.cells.values() for r in c.records)
    sections = []
    for name, exp in EXPERIMENTS.items():
        data = exp.select(col, paper)
        if not data:
            continue
        blocks = TABLES[name](data, paper, problems) if name in TABLES else []
        figures = FIGURES[name](data, paper, problems) if name in FIGURES else []
        about = " ".join((exp.select.__doc__ or "").strip().split("\n\n")[0].split())
        blocks = [b for b in blocks if b]       # an empty protocol note (no records) is no block
        sections.append(Section(name, exp.title, about, blocks, figures, check_claims(name, data, paper, facts)))
    problems.sort(key=lambda p: PROBLEM_ORDER.index(p.kind) if p.kind in PROBLEM_ORDER else len(PROBLEM_ORDER))
    return Report(col, paper, sections, problems, facts)


def _anchor(title: str) -> str:
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c == "-")


def render_markdown(report: Report) -> str:
    col = report.collection
    n_prob = len(report.problems)
    lines = ["# ffcv-ssl report", "",
             f"Runs folder `{col.runs_dir}`: {col.n_files} results files, {len(col.cells)} cells, "
             f"{n_prob} problem{'s' if n_prob != 1 else ''} (see [Problems](#problems)).", "",
             "Compared with Cole et al., *When Does Contrastive Visual Representation Learning Work?*, CVPR 2022 "
             "(arXiv 2105.05837); the paper's values come from `ffcv_ssl/data/paper_values.yaml`, each with its "
             "table or figure. A cell reads `ours (paper P, diff D)` where the paper has that cell; `≈` marks a "
             "value read off a figure (±1 pt); diff = ours - paper; top-1 is a fraction in [0, 1]; `–` is a missing "
             "result, `conflict` a cell claimed by runs that disagree.", ""]
    replicated = sum(1 for c in col.cells.values() if c.replicates > 1)
    if replicated:
        lines += [f"{replicated} cell(s) average several seeds (marked `N seeds`).", ""]
    lines += ["## Does the paper's direction hold?", ""]
    claims = [(s, c) for s in report.sections for c in s.claims]
    if claims:
        lines += [f"- [{s.title.split(':')[0]}] {c.line()}" for s, c in claims]
    else:
        lines.append("No finding of the paper can be tested on these results.")
    lines.append("")
    scope = [f"{f.dataset}: {f.image_side:.0f} px images" if f.image_side is not None else f"{f.dataset}: size unknown"
             for f in report.facts.values()]
    scope = [f"{t}, {report.facts[d].num_classes} classes" if report.facts[d].num_classes is not None else t
             for t, d in zip(scope, report.facts)]
    if scope:
        lines += ["What these results can test (from the evaluation betons' manifests): " + "; ".join(scope)
                  + ". A finding about something this data does not have (resolution, fine-grained classes) reads "
                  "**not testable here**, not as a pass or a failure.", ""]
    untested = [cid for cid in CLAIMS if cid not in {c.claim.id for _, c in claims}]
    if untested:
        names = [report.paper.claims[cid].statement if cid in report.paper.claims else cid for cid in untested]
        lines += [f"Not run in these results ({len(untested)} findings): " + "; ".join(names) + ".", ""]
    for s in report.sections:
        lines += [f"## {s.title}", ""]
        if s.about:
            lines += [s.about, ""]
        for f in s.figures:
            lines += [f"![{f.caption}]({f.name})", ""]
        for b in s.blocks:
            lines += [b.markdown() if isinstance(b, Table) else b, ""]
        if s.claims:
            lines += ["Direction checks:", ""] + [f"- {c.line()}" for c in s.claims] + [""]
    lines += ["## Problems", ""]
    if report.problems:
        counts = Counter(p.kind for p in report.problems)
        lines += [", ".join(f"{n} {k}" for k, n in counts.items()) + ".", ""]
        lines += [f"- **{p.kind}**: {p.message}" for p in report.problems]
    else:
        lines.append("None: every results file was read, and every cell has one consistent value.")
    lines.append("")
    if col.cells:
        cells = sorted(col.cells.values(), key=lambda c: (c.key.kind, c.key.describe(), by_count(c.key.budget)))
        lines += ["## All results", "", appendix_table(cells).markdown(), ""]
    return "\n".join(lines)


def _prepare_out(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"--out {out_dir} is a file, not a folder; choose another path")
    for parent in out_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise ReportError(f"--out {out_dir}: {parent} is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def write_report(report: Report, out_dir: os.PathLike | str) -> Path:
    """Figures first, then ``report.md`` (temp + rename), so the report never links a missing figure."""
    out_dir = _prepare_out(Path(out_dir))
    for s in report.sections:
        for f in s.figures:
            save_figure(f.figure, out_dir / f.name)
    return atomic_write_text(out_dir / REPORT_NAME, render_markdown(report))


def report(runs_dir: os.PathLike | str, out_dir: os.PathLike | str,
           paper_values: os.PathLike | str | None = None) -> Path:
    """Aggregate every ``results.json`` under ``runs_dir`` into ``out_dir/report.md`` plus PNG figures.

    Raises:
        ReportError: ``runs_dir`` is not a folder, ``out_dir`` is a file, or the paper values are malformed.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():      # checked before any work
        raise ReportError(f"--out {out} is a file, not a folder; choose another path")
    return write_report(build_report(runs_dir, load_paper_values(paper_values)), out)
