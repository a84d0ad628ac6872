"""The ``ffcv-ssl`` command line: one subcommand per step of the workflow, each a thin module in ``commands/``.

User errors (``UserError``) and operating-system errors (``OSError``: a full disk, a read-only or
unwritable output directory, a missing file) print one red line naming the path and a fix, and exit 2;
``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from . import __version__
from .commands import COMMANDS, load_commands
from .console import error_line
from .errors import UserError, os_error_message


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one red line (and exit 2) instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        error_line(f"{self.prog}: {message} (see '{self.prog} --help')")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    load_commands()
    parser = _Parser(prog="ffcv-ssl", description=__doc__.splitlines()[0],
                     epilog="Workflow: write -> pretrain -> eval -> report; submit runs sweeps on SLURM; "
                            "bench measures throughput. 'ffcv-ssl demo' runs a miniature of the study.")
    parser.add_argument("--version", action="version", version=f"ffcv-ssl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.description or cmd.help,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks instead of one-line errors")
        cmd.add_arguments(p)
        p.set_defaults(_command=cmd)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may follow options (argparse stops filling a positional list at the first flag)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides or []) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "_command", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._command.run(args) or 0)
    except UserError as exc:
        if args.debug:
            raise
        error_line(str(exc))
        return exc.exit_code
    except OSError as exc:          # ENOSPC, EACCES, EROFS, ENOENT, ENOTDIR...: the path and the fix, one line
        if args.debug:
            raise
        error_line(os_error_message(exc))
        return 2
    except KeyboardInterrupt:
        error_line("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
