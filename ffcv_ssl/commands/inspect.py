"""``ffcv-ssl inspect FILE.beton``: manifest summary, integrity check and a grid of sample images."""
import argparse

from . import register_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("beton", metavar="FILE.beton", help="a beton written by 'ffcv-ssl write' (its manifest beside it)")
    p.add_argument("--json", action="store_true", help="print the manifest (and --verify results) as JSON instead")
    p.add_argument("--verify", action="store_true",
                   help="recompute the sha256 and check the sample count in the beton's header against the manifest "
                        "(reads the whole file: ~1 min per 10 GB); exit 2 on a mismatch")
    p.add_argument("--grid", metavar="PNG", help="save a grid of random samples with their labels (decoded by ffcv)")
    p.add_argument("--grid-size", type=int, default=16, help="samples in the grid (default 16)")
    p.add_argument("--seed", type=int, default=0, help="which samples the grid shows (default 0)")
    p.add_argument("--corrupt", action="append", default=[], metavar="SPEC",
                   help="with --grid: show each sample clean and under this corruption condition, side by side "
                        "(repeat for more columns), e.g. --corrupt paper_jpeg --corrupt paper_downsample4x")
    p.add_argument("--corrupt-seed", type=int, default=0, help="seed of the corruption noise (as in 'write')")


@register_command("inspect", help="summarise, verify and preview a .beton from its manifest")
def run(args: argparse.Namespace) -> int:
    import json

    from dataset_writers.inspect import render, sample_grid, summary, verify

    from ..console import console
    from ..errors import UserError

    info = summary(args.beton)
    checks = verify(args.beton) if args.verify else None
    if args.json:
        print(json.dumps({**info, "manifest": info["manifest"].to_dict(),
                          **({"verify": checks} if checks is not None else {})}, indent=1))
    else:
        render(info, checks)
    if args.corrupt and not args.grid:
        raise UserError("--corrupt shows corruption conditions in a grid: add --grid OUT.png")
    if args.grid and args.corrupt:
        from dataset_writers.inspect import corruption_grid

        png = corruption_grid(args.beton, args.grid, args.corrupt, n=min(args.grid_size, 8), seed=args.seed,
                              corrupt_seed=args.corrupt_seed)
        if not args.json:
            console.print(f"clean vs corrupted grid saved to [bold]{png}[/]")
    elif args.grid:
        png = sample_grid(args.beton, args.grid, n=args.grid_size, seed=args.seed)
        if not args.json:
            console.print(f"grid of samples saved to [bold]{png}[/]")
    if checks is not None and not checks["ok"]:
        what = "sha256" if not checks["sha256_ok"] else "sample count"
        raise UserError(f"{args.beton}: {what} does not match its manifest (the file changed or is truncated); "
                        "rewrite it with 'ffcv-ssl write'")
    return 0
