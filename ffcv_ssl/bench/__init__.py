"""Benchmarks (``ffcv-ssl bench KIND``): each prints ratios against baselines measured in the same run.

A registry like the CLI's: each module registers one benchmark with ``@register_bench``; its module
defines ``add_arguments(parser)``. Timing never appears in tests: these machines are noisy.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable

from ..registry import Registry

_MODULES = ("write", "loader", "train")


@dataclass(frozen=True)
class Bench:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sys.modules[self.run.__module__].add_arguments(parser)  # type: ignore[attr-defined]


BENCHES: Registry[Bench] = Registry("bench", package=__name__, builtins=_MODULES)


def register_bench(name: str, help: str):
    def wrap(run: Callable[[argparse.Namespace], int]):
        BENCHES.register(name, Bench(name, help, run))
        return run
    return wrap


def load_benches() -> Registry[Bench]:
    """Every benchmark, in ``_MODULES`` order; a module that fails to import raises."""
    return BENCHES.load()
