"""Benchmarks (``ffcv-ssl bench KIND``): each prints ratios against baselines measured in the same run.

A registry like the CLI's: each module registers one benchmark with ``@register_bench``; its module
defines ``add_arguments(parser)``. Timing never appears in tests: these machines are noisy.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Callable, Dict

_MODULES = ("write", "loader", "train")


@dataclass(frozen=True)
class Bench:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sys.modules[self.run.__module__].add_arguments(parser)  # type: ignore[attr-defined]


BENCHES: Dict[str, Bench] = {}


def register_bench(name: str, help: str):
    def wrap(run: Callable[[argparse.Namespace], int]):
        if name in BENCHES:
            raise KeyError(f"bench {name!r} registered twice")
        BENCHES[name] = Bench(name, help, run)
        return run
    return wrap


def load_benches() -> Dict[str, Bench]:
    for mod in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{mod}":
                raise
    return BENCHES
