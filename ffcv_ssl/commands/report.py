"""``ffcv-ssl report RUNS_DIR --out DIR``: the paper's tables and figures from a folder of results.json files.

``ffcv-ssl report --paper-self-check [--out DIR]``: the paper's own values, fed in as results, must make every
direction check hold and must each be shown beside a result (exit status 0; 1 otherwise).
"""
import argparse

from . import register_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs_dir", metavar="RUNS_DIR", nargs="?",
                   help="folder searched recursively for results.json files (not with --paper-self-check)")
    p.add_argument("--out", help="output folder for report.md and its PNG figures (default: RUNS_DIR/report; with "
                                 "--paper-self-check: none, unless given)")
    p.add_argument("--paper-values", metavar="YAML",
                   help="the paper's numbers (default: ffcv_ssl/data/paper_values.yaml, shipped with the package)")
    p.add_argument("--paper-self-check", action="store_true",
                   help="feed the paper's own values in as results: every direction check must hold on them and "
                        "every value must be shown beside a result; exit status 1 names what does not")


def _self_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..console import console
    from ..report import load_paper_values, write_report
    from ..report.collect import ReportError
    from ..report.self_check import run_self_check

    if args.runs_dir:
        raise ReportError(f"--paper-self-check uses the paper's values, not a runs folder; drop {args.runs_dir}")
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file, not a folder; choose another path")
    check = run_self_check(load_paper_values(args.paper_values), out / "paper_runs" if out else None)
    for line in check.lines():
        console.print(line, soft_wrap=True, markup=False)
    if out is not None:
        console.print(f"[bold]report[/]: {write_report(check.report, out)}", soft_wrap=True)
    console.print("[green]paper self-check passed[/]" if check.ok else "[red]paper self-check failed[/]")
    return 0 if check.ok else 1


@register_command("report", help="aggregate results.json files into report.md with the paper's numbers beside ours",
                  description="Write the paper's tables (1-3) and figures (2-5) for every experiment whose "
                              "results exist under RUNS_DIR, with the paper's value and the difference beside each "
                              "of ours, the protocol that produced each table, whether the paper's direction holds "
                              "(or why these results cannot test it), and a list of missing or inconsistent "
                              "results (duplicates that disagree, unknown schema versions, unreadable files). "
                              "--paper-self-check runs the report on the paper's own values instead.")
def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..console import console
    from ..report import build_report, load_paper_values, write_report
    from ..report.collect import ReportError

    if args.paper_self_check:
        return _self_check(args)
    if not args.runs_dir:
        raise ReportError("give RUNS_DIR (the folder that holds the runs' results.json files), or --paper-self-check")
    out = Path(args.out) if args.out else Path(args.runs_dir) / "report"
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file, not a folder; choose another path")
    rep = build_report(args.runs_dir, load_paper_values(args.paper_values))
    path = write_report(rep, out)
    n_fig = sum(len(s.figures) for s in rep.sections)
    console.print(f"[bold]report[/]: {path} ({rep.collection.n_files} results files, {len(rep.collection.cells)} "
                  f"cells, {len(rep.sections)} sections, {n_fig} figures)", soft_wrap=True)
    if rep.problems:
        kinds = {}
        for p in rep.problems:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        console.print("[yellow]problems[/]: " + ", ".join(f"{n} {k}" for k, n in kinds.items())
                      + f" (listed under 'Problems' in {path.name})", soft_wrap=True)
    return 0
