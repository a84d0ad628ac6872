"""``ffcv-ssl demo``: the main job on its embedded default (scikit-learn digits, no download)."""
import argparse

from . import register_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. image_size=48 seed=1 (see ffcv_ssl/demo.py: DemoConfig)")
    p.add_argument("--out", help="output directory (default runs/demo); created if missing")
    p.add_argument("--config", help="optional YAML file of DemoConfig values (default: configs/demo.yaml values)")


@register_command("demo", help="run the miniature study on the embedded digits dataset",
                  description="Write scikit-learn's digits to .beton files with the real writer, read them back "
                              "with the real ffcv Loader, and print a summary. Needs no download.")
def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..demo import DemoConfig, run_demo

    overrides = list(args.overrides) + ([f"out={args.out}"] if args.out else [])
    cfg = load_config(DemoConfig, args.config, overrides)
    run_demo(cfg)
    return 0
