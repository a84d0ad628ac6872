"""Atomic file output (write to a temporary name beside the target, rename when complete), and JSON input.

A reader (or a kill at any moment) never sees half a file under the final name, and a failed write
leaves no temporary file behind. Every result, manifest, config, report, figure and checkpoint goes
through here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: os.PathLike | str, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to produce the file at a temporary path, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None:   # a failed write() (ENOSPC, EIO) names no file: name the one being written
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: os.PathLike | str, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_figure(fig, path: os.PathLike | str, **savefig_kwargs) -> Path:
    """A matplotlib figure as PNG, atomically (the temporary name has no extension, so the format is given)."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", **savefig_kwargs))


def read_json(path: os.PathLike | str, error: Callable[[str], Exception], fix: str = "") -> Any:
    """The parsed JSON of ``path``; invalid JSON raises ``error`` with one line naming the file, the place and ``fix``.

    Every JSON file we read (manifests, results, feature caches, iNat21 annotations) reports a damaged file
    the same way: ``<path>: not valid JSON (<why> at line N); <fix>``. A missing file is the caller's to word.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})" + (f"; {fix}" if fix else "")) from None
