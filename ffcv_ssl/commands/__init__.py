"""Registry of CLI subcommands: each module registers one ``Command`` (a dict plus a decorator, no if/elif).

Command modules import only light things at module level; heavy imports (torch, ffcv) happen in ``run``
so that ``ffcv-ssl --help`` answers in well under a second.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Callable, Dict

# Order of the workflow, which is also the order of ``ffcv-ssl --help``.
_MODULES = ("write", "inspect", "pretrain", "eval", "submit", "rehearse", "report", "bench", "demo")


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    description: str = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Delegates to the ``add_arguments`` function of the module that defines ``run``."""
        sys.modules[self.run.__module__].add_arguments(parser)  # type: ignore[attr-defined]


COMMANDS: Dict[str, Command] = {}


def register_command(name: str, help: str, description: str = ""):
    """Decorator for a module-level ``run(args)``; ``add_arguments`` is looked up in the same module."""
    def wrap(run: Callable[[argparse.Namespace], int]):
        if name in COMMANDS:
            raise KeyError(f"command {name!r} registered twice")
        COMMANDS[name] = Command(name, help, run, description)
        return run
    return wrap


def load_commands() -> None:
    for mod in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{mod}":
                raise
