"""Registry of dataset readers: ``@register_reader("imagenet", ...)`` next to each reader, no if/elif on names."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, Tuple, Type

from ffcv_ssl.registry import Registry

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


# one module per built-in dataset under readers/, imported on first lookup (an import error there raises)
READERS: Registry[ReaderSpec] = Registry("dataset", package=f"{__package__}.readers", error=WriterError,
                                         builtins=("digits", "imagenet", "inat21", "places365", "glc20"))


def register_reader(name: str, *, splits: Sequence[str], options: Type, summary: str = ""):
    def wrap(read: ReadFn) -> ReadFn:
        READERS.register(name, ReaderSpec(name, tuple(splits), options, read,
                                          summary or (read.__doc__ or "").split("\n")[0]))
        return read
    return wrap


def load_readers() -> Registry[ReaderSpec]:
    return READERS.load()


def get_reader(name: str) -> ReaderSpec:
    """The reader of dataset ``name``; an unknown one is a one-line ``WriterError`` with the closest name."""
    return READERS.lookup(name)
