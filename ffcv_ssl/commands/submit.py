"""``ffcv-ssl submit SWEEP``: expand a sweep, validate everything, submit one job array per stage."""
import argparse

from . import register_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="a sweep file, e.g. configs/sweeps/quality.yaml (one per experiment of the study)")
    p.add_argument("--cluster", choices=("slurm", "local", "debug"),
                   help="default: slurm when 'scontrol ping' answers, else local (subprocesses on this machine)")
    p.add_argument("--dry-run", action="store_true", help="expand and validate, print the plan, submit nothing")
    p.add_argument("--partition", help="SLURM partition (default: debug, the local test cluster's)")
    p.add_argument("--max-parallel", type=int, default=4,
                   help="array tasks running at once (SLURM %%N) or local jobs at a time (default 4; 1 on a laptop)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a sweep variable, e.g. --set data=/scratch/betons --set runs=/scratch/runs")
    p.add_argument("--log-dir", help="submitit logs (default runs/sweeps/<name>/submitit)")
    p.add_argument("--no-wait", action="store_true", help="SLURM: submit and return (jobs keep running)")


@register_command("submit", help="submit a sweep (write -> pretrain -> evaluate) to SLURM or run it locally",
                  description="Expand a sweep file into jobs, validate every config and input before submitting "
                              "anything, skip jobs whose outputs exist, and submit one submitit job array per stage "
                              "with SLURM dependencies between stages. Pretraining jobs requeue on preemption and "
                              "resume from their checkpoints.")
def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.markup import escape

    from ffcv_ssl.slurm.submit import choose_cluster, plan_table, run_sweep
    from ffcv_ssl.slurm.sweep import plan

    from ..console import console
    from ..errors import UserError

    if args.max_parallel < 1:
        raise UserError("--max-parallel must be >= 1")
    from ..paths import configs_root, resolve_config_path

    args.sweep = str(resolve_config_path(args.sweep))
    if not Path(args.sweep).is_file():
        raise UserError(f"sweep file {args.sweep} does not exist; the shipped sweeps are in {configs_root() / 'sweeps'}")
    cluster = choose_cluster(args.cluster) if not args.dry_run else (args.cluster or "slurm/local")
    sweep, stages = plan(args.sweep, args.set)
    console.print(f"[bold]{sweep.name}[/]: {sweep.description}" + (f" ({sweep.paper})" if sweep.paper else ""))
    console.print(plan_table(stages))
    if args.dry_run:
        console.print(f"dry run: {sum(len(j) for _, j in stages)} job(s) validated, nothing submitted")
        return 0
    folder = Path(args.log_dir or Path("runs") / "sweeps" / sweep.name / "submitit")
    report = run_sweep(sweep.name, stages, cluster=cluster, folder=folder, partition=args.partition,
                       max_parallel=args.max_parallel, wait=not args.no_wait)
    console.print(f"submitted {report.submitted} job(s), skipped {report.skipped} finished one(s) [{cluster}]")
    for o in report.failed:
        console.print(f"[red]{o.state}[/] {escape(str(o.job))}: {escape(str(o.detail))}")
    return 1 if report.failed else 0
