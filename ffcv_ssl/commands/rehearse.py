"""``ffcv-ssl rehearse [SWEEP ...]``: the study's sweep files, unchanged, end to end at rehearsal scale."""
import argparse

from . import register_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweeps", nargs="*", metavar="SWEEP",
                   help="sweep names or files (default: the seven study sweeps quantity, domain, pooling, "
                        "concatenation, quality, granularity, methods)")
    p.add_argument("--cluster", choices=("slurm", "local", "debug"),
                   help="default: slurm when 'scontrol ping' answers, else local (subprocesses on this machine)")
    p.add_argument("--out", default="runs/rehearsal",
                   help="one shared tree for every sweep: fixtures/, data/, runs/, reports/<sweep>/ (default "
                        "runs/rehearsal); rerunning skips finished work")
    p.add_argument("--max-parallel", type=int, default=0,
                   help="jobs at a time (default: 2 on SLURM, 1 locally: each job uses every core)")
    p.add_argument("--pack", type=int, default=8,
                   help="jobs of a stage run one after another in one process (array task), default 8: each "
                        "process pays seconds of imports for about a second of rehearsal work; 1 = one per job")
    p.add_argument("--partition", help="SLURM partition (default: debug, the local test cluster's)")


@register_command("rehearse", help="run the study's sweeps end to end at rehearsal scale on fixture datasets",
                  description="Build fixture datasets in the four official layouts from real photographs (>= 100 "
                              "classes, long-tailed), then run each sweep file unchanged with the rehearsal profile "
                              "on top (counts / 1000, a tiny ResNet, 32-px views, one epoch; docs/sweeps.md, "
                              "'Rehearsal'): write, pretrain, every evaluation, report. Ends with one table, a row "
                              "per sweep; exit status 1 if any job failed.")
def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import UserError
    from ..rehearse.run import STUDY_SWEEPS, rehearse

    if args.max_parallel < 0 or args.pack < 1:
        raise UserError("--max-parallel must be >= 0 and --pack >= 1")
    outcomes = rehearse(args.sweeps or STUDY_SWEEPS, Path(args.out), cluster=args.cluster,
                        max_parallel=args.max_parallel, partition=args.partition, pack=args.pack)
    return 0 if all(o.ok for o in outcomes) else 1
