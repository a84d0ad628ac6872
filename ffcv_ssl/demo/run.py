"""The miniature study's steps: betons, sweep, report, summary."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List

from rich.markup import escape

from ..console import console
from ..errors import UserError
from ..paths import configs_root

if TYPE_CHECKING:
    from dataset_writers.manifest import Manifest

# The data-quality conditions for the digits. Their native resolution is 8 x 8 (stored upscaled to 32 px),
# so the paper's "2x" and "4x" losses of resolution are 32 -> 4 -> 32 and 32 -> 2 -> 32 here (factors 8 and
# 16 at the stored size: downsampling 32 -> 16 -> 32 would lose nothing). The paper's resize control is the
# identity at 32 px, so it is left out. Salt & pepper and JPEG use the registry's defaults.
CONDITIONS: Dict[str, List[str]] = {
    "clean": [],
    "salt_pepper": ["salt_pepper"],
    "jpeg": ["jpeg"],
    "downsample8x": ["downsample:size=32,factor=8"],
    "downsample16x": ["downsample:size=32,factor=16"],
}
QUICK_CONDITIONS = ("clean", "downsample8x")


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    quick: bool = False                # the test suite's end-to-end run: 2 conditions, 3 epochs (<= 3 min)
    epochs: int = 0                    # pretraining epochs; 0: 15 (full) or 3 (quick)
    cluster: str = "auto"              # auto: SLURM when 'scontrol ping' answers, else submitit's local executor
    max_parallel: int = 0              # jobs at a time; 0: 1 on the local executor (concurrent jobs would
                                       # oversubscribe the cores: torch and numba each use every CPU), 2 on SLURM
    image_size: int = 32
    jpeg_quality: int = 90
    workers: int = 0                   # writer processes; 0: the CPUs of the affinity mask
    seed: int = 0

    def validate(self) -> None:
        if self.cluster not in ("auto", "local", "slurm", "debug"):
            raise UserError(f"cluster={self.cluster!r} must be auto, local, slurm or debug")
        if self.epochs < 0 or self.max_parallel < 0:
            raise UserError("epochs and max_parallel must be >= 0")


def prepare_out_dir(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory; choose another path")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"--out {out}: {parent} is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_betons(data: Path, cfg: DemoConfig) -> Dict[str, Manifest]:
    """Clean train/test betons and one corrupted train beton per condition (skipped when already written)."""
    from dataset_writers.write import ImageOptions, write_dataset

    image = ImageOptions(max_resolution=cfg.image_size, write_mode="jpg", jpeg_quality=cfg.jpeg_quality,
                         page_size=1 << 21)
    options = [f"size={cfg.image_size}", f"split_seed={cfg.seed}"]
    jobs = {"test": ("test", [])}
    conditions = QUICK_CONDITIONS if cfg.quick else tuple(CONDITIONS)
    jobs.update({f"train_{c}": ("train", CONDITIONS[c]) for c in conditions})
    manifests = {}
    for name, (split, corruptions) in jobs.items():
        out = data / f"digits_{name}.beton"
        if out.exists():
            from dataset_writers.manifest import read_manifest

            manifests[name] = read_manifest(out)
            continue
        manifests[name] = write_dataset("digits", None, split, out, options=options, image=image,
                                        workers=cfg.workers or None, corruptions=corruptions, corrupt_seed=cfg.seed)
    return manifests


def _summarise(runs: Path) -> Dict[str, Any]:
    """The numbers the closing note and the console quote: SimCLR vs random, worst corruption."""
    from ..results import read_results

    top1: Dict[str, float] = {}
    for path in runs.glob("eval/*/linear-all/results.json"):
        top1[path.parent.parent.name] = read_results(path).metrics["top1"]
    out: Dict[str, Any] = {"linear_top1_all_labels": top1}
    if "simclr_clean" in top1 and "random" in top1:
        out["simclr_minus_random"] = top1["simclr_clean"] - top1["random"]
    drops = {c: top1[f"simclr_{c}"] - top1["simclr_clean"] for c in CONDITIONS
             if c != "clean" and f"simclr_{c}" in top1 and "simclr_clean" in top1}
    if drops:
        worst = min(drops, key=drops.get)
        out["simclr_delta_by_corruption"] = drops
        out["worst_corruption_for_simclr"] = worst
    return out


def run_demo(cfg: DemoConfig) -> Dict[str, Any]:
    from rich.table import Table

    from ffcv_ssl.slurm.submit import choose_cluster, plan_table, run_sweep
    from ffcv_ssl.slurm.sweep import plan

    from ..report import report

    start = time.perf_counter()
    out = prepare_out_dir(Path(cfg.out))
    data, runs = out / "data", out / "runs"
    data.mkdir(exist_ok=True)
    cluster = choose_cluster(None if cfg.cluster == "auto" else cfg.cluster)
    console.rule(f"[bold]ffcv-ssl demo[/]{' --quick' if cfg.quick else ''}: the study in miniature on "
                 f"scikit-learn digits ({cluster} executor)")
    console.print("[bold]1/3[/] writing betons (clean, corrupted variants) with the real writer")
    write_betons(data, cfg)
    sweep_file = configs_root() / "sweeps" / ("demo_quick.yaml" if cfg.quick else "demo.yaml")
    epochs = cfg.epochs or (3 if cfg.quick else 15)
    sets = [f"data={data.resolve()}", f"runs={runs.resolve()}", f"epochs={epochs}"]
    # the sweep names its configs as configs/pretrain/...: they resolve to the shipped copies (ffcv_ssl/paths.py)
    sweep, stages = plan(sweep_file, sets)
    console.print(f"[bold]2/3[/] sweep {sweep.name}: {sum(len(j) for _, j in stages)} jobs")
    console.print(plan_table(stages))
    parallel = cfg.max_parallel or (2 if cluster == "slurm" else 1)
    report_run = run_sweep(sweep.name, stages, cluster=cluster, folder=runs / "submitit", max_parallel=parallel)
    for o in report_run.failed:
        console.print(f"[red]{o.state}[/] {escape(str(o.job))}: {escape(str(o.detail))}")
    if report_run.failed:
        raise UserError(f"{len(report_run.failed)} demo job(s) did not complete (logs in {runs / 'submitit'}); "
                        "the first error is printed above")
    console.print("[bold]3/3[/] report")
    report_md = report(runs, out / "report")
    summary = _summarise(runs)
    summary.update({"seconds": round(time.perf_counter() - start, 1), "report": str(report_md),
                    "cluster": cluster, "submitted": report_run.submitted, "skipped": report_run.skipped})
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    table = Table(title="linear probe top-1 on the digits test split (all labels)")
    table.add_column("representation")
    table.add_column("top-1", justify="right")
    for name, value in sorted(summary["linear_top1_all_labels"].items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{value:.3f}")
    console.print(table)
    if "simclr_minus_random" in summary:
        console.print(f"SimCLR (clean) beats a random backbone by {summary['simclr_minus_random']:+.3f} top-1")
    if "worst_corruption_for_simclr" in summary:
        w = summary["worst_corruption_for_simclr"]
        console.print(f"worst corruption for SimCLR: {w} ({summary['simclr_delta_by_corruption'][w]:+.3f} top-1)")
    console.print(f"report: [bold]{report_md}[/]  (took {summary['seconds']:.0f} s)")
    return summary
