"""``ffcv-ssl demo``: the main job on its embedded default (scikit-learn digits, no download)."""
import argparse

from . import register_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="overrides of DemoConfig (ffcv_ssl/demo/run.py), e.g. epochs=20 max_parallel=2 cluster=local")
    p.add_argument("--out", help="output directory (default runs/demo); created if missing; rerunning reuses "
                                 "finished betons, runs and results")
    p.add_argument("--quick", action="store_true",
                   help="2 conditions, 3 epochs (<= 3 min on 2 cores): what the test suite runs")
    p.add_argument("--config", help="optional YAML of DemoConfig values")


@register_command("demo", help="run the study in miniature on the embedded digits dataset (no download)",
                  description="Write scikit-learn's digits to betons (clean, nested subset, corrupted variants), run a "
                              "sweep of SimCLR and supervised pretraining and evaluations through submitit (local "
                              "executor, or SLURM when 'scontrol ping' answers), and render the report. About 11 "
                              "minutes on 2 CPU cores; --quick about 2.5.")
def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..demo import DemoConfig, run_demo

    overrides = list(args.overrides) + ([f"out={args.out}"] if args.out else []) + (["quick=true"] if args.quick else [])
    cfg = load_config(DemoConfig, args.config, overrides)
    run_demo(cfg)
    return 0
