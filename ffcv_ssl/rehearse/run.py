"""Run sweep files at rehearsal scale (one shared output tree), report each, summarise in one table.

Sweeps run one after another into the same ``--out`` tree (``data/``, ``runs/``), so a beton or a
pretraining that several sweeps name (``inat21_train_1000000.beton``, ``runs/pretrain/simclr_inat21_1000000``)
is produced once and skipped afterwards, exactly as ``ffcv-ssl submit`` skips finished work.

Each sweep's report is built from copies of its own results files in ``reports/<sweep>/results/``, with
sizes and budgets put back at the paper's scale (x1000, see ``profile.py``) so that every cell lands
in the paper's slot beside the paper's value; each copy records the rehearsal counts under
``extra.rehearsal``, and ``report.md`` opens with a line saying that it is a rehearsal.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from rich.markup import escape

from ..console import console
from ..errors import UserError
from ..files import atomic_write_text
from .fixtures import FixtureSpec, build_rehearsal_datasets
from .profile import RehearsalProfile

#: The seven study sweeps (configs/sweeps/), in the paper's order of lenses.
STUDY_SWEEPS = ("quantity", "domain", "pooling", "concatenation", "quality", "granularity", "methods")
#: Which tables of ``paper_values.yaml`` each study sweep reproduces (prefix match: fig2 covers fig2a, fig2b).
SWEEP_TABLES = {"quantity": ("fig2",), "domain": ("table1",), "pooling": ("table2",), "concatenation": ("table3",),
                "quality": ("fig4",), "granularity": ("fig5",), "methods": ("fig3",)}


@dataclass
class SweepOutcome:
    name: str
    jobs: int = 0
    submitted: int = 0
    skipped: int = 0
    failed: List[str] = field(default_factory=list)      # "STATE job: detail"
    seconds: float = 0.0
    report: Optional[Path] = None
    paper_cells: int = 0
    paper_cells_covered: int = 0
    missing_cells: List[str] = field(default_factory=list)
    error: str = ""                                      # planning or reporting failed (no job ran / no report)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.error


def sweep_path(name: str) -> Path:
    """A sweep given by name (``quality``) or path (``configs/sweeps/quality.yaml``)."""
    from ..paths import configs_root, resolve_config_path

    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        p = resolve_config_path(p)
        if not p.is_file():
            raise UserError(f"sweep file {name} does not exist; the study's sweeps are in {configs_root() / 'sweeps'}")
        return p
    p = configs_root() / "sweeps" / f"{name}.yaml"
    if not p.is_file():
        known = ", ".join(sorted(q.stem for q in p.parent.glob("*.yaml")))
        raise UserError(f"no sweep named {name!r} (known: {known}); give a name or a path to a sweep file")
    return p


def plan_rehearsal(path: Path, profile: RehearsalProfile, raw: Path, data: Path, runs: Path):
    """Load the sweep unchanged, apply the profile (vars, resources, the argument hook), expand and validate."""
    from ffcv_ssl.slurm.sweep import expand, load_sweep, validate_inputs

    declared = list(load_sweep(path).vars)
    sweep = load_sweep(path, profile.sweep_vars(declared, str(raw), str(data), str(runs)))
    for stage in sweep.stages:
        profile.resources(stage)
    stages = expand(sweep, profile)
    validate_inputs(stages)
    return sweep, stages


def rehearse(sweeps: Sequence[str] = STUDY_SWEEPS, out: Path = Path("runs/rehearsal"), cluster: Optional[str] = None,
             max_parallel: int = 0, partition: Optional[str] = None, profile: Optional[RehearsalProfile] = None,
             spec: FixtureSpec = FixtureSpec(), pack: int = 8) -> List[SweepOutcome]:
    """Run ``sweeps`` at rehearsal scale into ``out``; returns one outcome per sweep (also printed as a table).

    ``pack``: jobs per array task (``JobPack``): a rehearsal job does a second of work after seconds of imports,
    so running up to 8 of a stage's jobs in one process makes the whole rehearsal several times faster.
    """
    from ffcv_ssl.slurm.submit import choose_cluster, run_sweep

    profile = profile or RehearsalProfile()
    paths = [sweep_path(s) for s in sweeps]                  # every name checked before any work
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose another path")
    cluster = choose_cluster(cluster)
    parallel = max_parallel or (2 if cluster == "slurm" else 1)
    raw, data, runs = out / "fixtures", out / "data", out / "runs"
    for d in (raw, data, runs):
        d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    console.print(f"[bold]rehearsal[/]: fixture datasets in {raw} ...")
    sizes = build_rehearsal_datasets(raw, spec)
    console.print(f"  built or reused in {time.perf_counter() - t0:.0f} s: "
                  + ", ".join(f"{k} {v['train']}+{v['val']} images / {v['classes']} classes" for k, v in sizes.items()))
    outcomes = []
    for path in paths:
        outcome = SweepOutcome(path.stem)
        start = time.perf_counter()
        try:
            sweep, stages = plan_rehearsal(path, profile, raw, data, runs)
            outcome.name = sweep.name
            outcome.jobs = sum(len(j) for _, j in stages)
            console.rule(f"[bold]{sweep.name}[/]: {outcome.jobs} jobs ({cluster})")
            result = run_sweep(f"rehearse-{sweep.name}", stages, cluster=cluster, folder=out / "submitit" / sweep.name,
                               partition=partition, max_parallel=parallel, pack=pack)
            outcome.submitted, outcome.skipped = result.submitted, result.skipped
            outcome.failed = [f"{o.state} {o.job}: {o.detail}" for o in result.failed]
            for line in outcome.failed:                  # job names hold [...]: not rich markup
                console.print(f"[red]{escape(line)}[/]", soft_wrap=True)
            try:
                outcome.report = report_sweep(sweep.name, stages, out / "reports" / sweep.name, profile, spec, outcome)
            except Exception as exc:  # noqa: BLE001 - a report defect is a finding of the rehearsal, not a crash
                console.print_exception(max_frames=4)
                outcome.error = f"report failed: {type(exc).__name__}: {exc}"
        except UserError as exc:
            outcome.error = str(exc)
            console.print(f"[red]{sweep_label(path)}[/]: {escape(str(exc))}", soft_wrap=True)
        outcome.seconds = time.perf_counter() - start
        outcomes.append(outcome)
    write_summary(out, outcomes, cluster)
    console.print(summary_table(outcomes))
    return outcomes


def sweep_label(path: Path) -> str:
    return path.stem


# ------------------------------------------------------------------------------------------------ reports

def _paper_scale(data: Dict[str, Any], profile: RehearsalProfile, full: int) -> Dict[str, Any]:
    """A results dict with sizes and budgets at the paper's scale; the rehearsal counts kept in ``extra``."""
    data = json.loads(json.dumps(data))
    seen = {"size": data["pretrain"].get("size"), "budget": data["eval"].get("budget"),
            "concat_sizes": [c.get("size") for c in data.get("concat", [])]}
    data["pretrain"]["size"] = profile.paper_count(data["pretrain"].get("size"), full)
    data["eval"]["budget"] = profile.paper_count(data["eval"].get("budget"), full)
    for c in data.get("concat", []):
        c["size"] = profile.paper_count(c.get("size"), full)
    data.setdefault("extra", {})["rehearsal"] = {"scale": profile.scale, **seen}
    return data


def report_sweep(name: str, stages, out: Path, profile: RehearsalProfile, spec: FixtureSpec,
                 outcome: SweepOutcome) -> Optional[Path]:
    """Copy this sweep's results (at the paper's scale) under ``out/results`` and render ``out/report.md``."""
    from ..report import build_report, load_paper_values, write_report

    results = out / "results"
    shutil.rmtree(results, ignore_errors=True)
    n = 0
    for _, jobs in stages:
        for job in jobs:
            for o in job.outputs:
                src = Path(o)
                if src.name != "results.json" or not src.is_file():
                    continue
                rel = Path(job.stage) / Path(*src.parts[-3:-1])      # stage / <run> / <kind-budget>
                data = _paper_scale(json.loads(src.read_text()), profile, spec.train)
                atomic_write_text(results / rel / "results.json", json.dumps(data, indent=1) + "\n")
                n += 1
    if not n:
        return None
    paper = load_paper_values()
    rep = build_report(results, paper)
    path = write_report(rep, out)
    text = path.read_text()
    note = (f"> **Rehearsal** (`ffcv-ssl rehearse`): fixture datasets, sizes and label budgets divided by "
            f"{profile.scale} and shown here at the paper's scale (each results file keeps its rehearsal counts "
            f"under `extra.rehearsal`), {profile.arch} at {profile.image_size} px, {profile.epochs} epoch(s). "
            "The numbers test the pipeline, not the paper.\n\n")
    atomic_write_text(path, text.replace("\n", "\n\n" + note, 1) if text.startswith("# ") else note + text)
    wanted, missing = paper_cell_coverage(path.read_text(), paper, SWEEP_TABLES.get(name, ()))
    outcome.paper_cells, outcome.paper_cells_covered = wanted, wanted - len(missing)
    outcome.missing_cells = missing
    return path


def paper_cell_coverage(report_text: str, paper, tables: Sequence[str]):
    """(paper cells of ``tables``, those whose value the report never prints beside one of ours).

    The report writes a cell the paper has as ``ours (paper P, diff D)``; a paper cell counts as listed when its
    ``(paper P`` appears at least as often as the paper has cells with that value (two cells may share one).
    Matching the report's text, not the cell keys, is what a reader sees, and it follows the report's own rules
    for conditions (``salt_pepper`` vs ``salt_pepper:p=0.09``), any-of datasets and concatenations.
    """
    from collections import Counter

    values = [v for v in paper.values if any(v.table.startswith(t) for t in tables)]

    def forms(v) -> Tuple[str, ...]:
        mark = "≈" if v.read_off_figure else ""
        return tuple(dict.fromkeys((f"(paper {mark}{v.value:.3f}", f"(paper {mark}{v.value:+.3f}")))

    need = Counter(forms(v) for v in values)
    missing = [f"{v.table} {v.metric} {v.value} {dict(v.cell)}" for v in values
               if sum(report_text.count(f) for f in forms(v)) < need[forms(v)]]
    return len(values), missing


# ------------------------------------------------------------------------------------------------ summary

def summary_table(outcomes: Sequence[SweepOutcome]):
    from rich.table import Table

    import os

    # report paths relative to their common folder (named in the caption), e.g. quantity/report.md
    dirs = [os.path.dirname(str(o.report)) for o in outcomes if o.report]
    root = os.path.commonpath(dirs) if dirs else ""
    root = os.path.dirname(root) if root in dirs else root
    table = Table(title="ffcv-ssl rehearse", caption=f"reports under {root}" if root else None)
    for col, just in (("sweep", "left"), ("jobs", "right"), ("ran", "right"), ("skipped", "right"),
                      ("failed", "right"), ("wall s", "right"), ("paper cells", "right"), ("report", "left")):
        # never ellipsise a sweep name or the report's path (a narrow or non-terminal console would): fold them
        table.add_column(col, justify=just, no_wrap=col == "sweep",
                         min_width=13 if col == "sweep" else None,
                         overflow="fold" if col == "report" else "ellipsis")
    for o in outcomes:
        failed = "plan/report error" if o.error else str(len(o.failed))
        style = "red" if not o.ok else ("yellow" if o.paper_cells_covered < o.paper_cells else "")
        table.add_row(o.name, str(o.jobs), str(o.submitted), str(o.skipped), failed, f"{o.seconds:.0f}",
                      f"{o.paper_cells_covered}/{o.paper_cells}" if o.paper_cells else "-",
                      escape(os.path.relpath(o.report, root) if o.report and root else
                             str(o.report) if o.report else (o.error[:80] or "-")), style=style)
    return table


def write_summary(out: Path, outcomes: Sequence[SweepOutcome], cluster: str) -> Path:
    rows = [{"sweep": o.name, "jobs": o.jobs, "submitted": o.submitted, "skipped": o.skipped, "failed": o.failed,
             "seconds": round(o.seconds, 1), "report": str(o.report) if o.report else None,
             "paper_cells": o.paper_cells, "paper_cells_covered": o.paper_cells_covered,
             "missing_paper_cells": o.missing_cells, "error": o.error} for o in outcomes]
    return atomic_write_text(out / "summary.json", json.dumps({"cluster": cluster, "sweeps": rows}, indent=1) + "\n")
