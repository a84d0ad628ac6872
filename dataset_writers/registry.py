"""Registry of dataset readers: ``@register_reader("imagenet", ...)`` next to each reader, no if/elif on names."""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Sequence, Tuple, Type

from .errors import WriterError
from .records import SplitIndex

ReadFn = Callable[[Path, str, Any], SplitIndex]


@dataclass(frozen=True)
class ReaderSpec:
    """A reader: ``read(root, split, options) -> SplitIndex``; ``options`` is a typed dataclass instance."""

    name: str
    splits: Tuple[str, ...]
    options: Type
    read: ReadFn
    summary: str


READERS: Dict[str, ReaderSpec] = {}

_BUILTIN = ("digits", "imagenet", "inat21", "places365", "glc20")


def register_reader(name: str, *, splits: Sequence[str], options: Type, summary: str = ""):
    def wrap(read: ReadFn) -> ReadFn:
        if name in READERS:
            raise KeyError(f"reader {name!r} registered twice")
        READERS[name] = ReaderSpec(name, tuple(splits), options, read, summary or (read.__doc__ or "").split("\n")[0])
        return read
    return wrap


def load_readers() -> Dict[str, ReaderSpec]:
    for mod in _BUILTIN:
        try:
            importlib.import_module(f"{__package__}.readers.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.readers.{mod}":
                raise
    return READERS


def get_reader(name: str) -> ReaderSpec:
    load_readers()
    if name not in READERS:
        close = difflib.get_close_matches(name, READERS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise WriterError(f"unknown dataset '{name}'{hint} (known: {', '.join(sorted(READERS))})")
    return READERS[name]
