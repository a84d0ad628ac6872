"""``ffcv-ssl report RUNS_DIR --out DIR``: the paper's tables and figures from a folder of results.json files."""
import argparse

from . import register_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs_dir", metavar="RUNS_DIR", help="folder searched recursively for results.json files")
    p.add_argument("--out", help="output folder for report.md and its PNG figures (default: RUNS_DIR/report)")
    p.add_argument("--paper-values", metavar="YAML",
                   help="the paper's numbers (default: ffcv_ssl/data/paper_values.yaml, shipped with the package)")


@register_command("report", help="aggregate results.json files into report.md with the paper's numbers beside ours",
                  description="Write the paper's tables (1-3) and figures (2, 4, 5) for every experiment whose "
                              "results exist under RUNS_DIR, with the paper's value and the difference beside each "
                              "of ours, whether the paper's direction holds, and a list of missing or inconsistent "
                              "results (duplicates that disagree, unknown schema versions, unreadable files).")
def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..console import console
    from ..report import build_report, load_paper_values, write_report
    from ..report.collect import ReportError

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
