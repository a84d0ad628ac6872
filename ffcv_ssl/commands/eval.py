"""``ffcv-ssl eval KIND CONFIG [key=value ...]``: evaluate a representation; one results.json per budget."""
import argparse

from . import register_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..evaluation.kinds import KIND_HELP

    p.add_argument("kind", help=", ".join(f"{kind} ({text})" for kind, text in KIND_HELP.items()))
    p.add_argument("config", nargs="?", help="optional YAML of EvalConfig values (ffcv_ssl/evaluation/config.py)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="e.g. checkpoint=runs/simclr train=data/inat21_train.beton test=data/inat21_val.beton "
                        "budgets=[10k,50k,all] out_dir=runs/eval/x. Budgets are nested subsets of the train beton.")


@register_command("eval", help="evaluate a representation (linear/kNN/hierarchical/concat/fine-tune/scratch)",
                  description="Extract frozen features once per (checkpoint, beton) into a memory-mapped cache, "
                              "then run the protocol on each label budget; writes OUT_DIR/<kind>-<budget>/results.json.")
def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..console import console
    from ..evaluation.config import EvalConfig
    from ..evaluation.runner import run_eval

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:      # no YAML given: the first override landed in 'config'
        config, overrides = None, [config, *overrides]
    cfg = load_config(EvalConfig, config, overrides)
    for path in run_eval(args.kind, cfg):
        console.print(f"wrote {path}")
    return 0
