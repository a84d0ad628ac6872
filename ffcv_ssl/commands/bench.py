"""``ffcv-ssl bench KIND``: throughput benchmarks with same-run baselines (see ``ffcv_ssl/bench``)."""
import argparse

from . import register_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..bench import load_benches

    sub = p.add_subparsers(dest="bench", metavar="KIND", parser_class=type(p))
    for name, bench in load_benches().items():
        q = sub.add_parser(name, help=bench.help, description=bench.help)
        bench.add_arguments(q)
        q.set_defaults(_bench=bench)


@register_command("bench", help="measure throughput (write, loader, train) against same-run baselines")
def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    bench = getattr(args, "_bench", None)
    if bench is None:
        raise UserError("ffcv-ssl bench needs a KIND; see 'ffcv-ssl bench --help'")
    return int(bench.run(args) or 0)
