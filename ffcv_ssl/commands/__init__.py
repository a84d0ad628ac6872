"""Registry of CLI subcommands: each module registers one ``Command`` (a dict plus a decorator, no if/elif).

Command modules import only light things at module level; heavy imports (torch, ffcv) happen in ``run``
so that ``ffcv-ssl --help`` answers in well under a second.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable

from ..registry import Registry

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


COMMANDS: Registry[Command] = Registry("command", package=__name__, builtins=_MODULES)


def register_command(name: str, help: str, description: str = ""):
    """Decorator for a module-level ``run(args)``; ``add_arguments`` is looked up in the same module."""
    def wrap(run: Callable[[argparse.Namespace], int]):
        COMMANDS.register(name, Command(name, help, run, description))
        return run
    return wrap


def load_commands() -> None:
    """Import every command module (in ``_MODULES`` order); one that fails to import raises."""
    COMMANDS.load()
