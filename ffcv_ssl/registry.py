"""One registry type for everything chosen by name (commands, readers, objectives, evaluations, ...).

Each registry is a read-only mapping ``name -> entry`` filled by a ``register`` decorator next to the code it
names, so no module branches on names with if/elif. Built-in entries live in modules that may be heavy
(torch, ffcv): they are imported on the first lookup, not at import time, so ``ffcv-ssl --help`` and config
validation stay fast. A built-in module that fails to import is an error, never a silently missing entry: a
wheel that forgot a module must fail loudly, not lose a command. Built-in names are declared up front, so
``check`` can validate a name (and suggest the closest one) without importing anything heavy.

This module sits in the foundation layer (it imports only ``errors``), so ``dataset_writers`` may use it.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Callable, Dict, Generic, Iterable, Iterator, List, Mapping, Sequence, Type, TypeVar, Union

from .errors import UserError

T = TypeVar("T")
_MISSING = object()


def suggest(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known`` (case-insensitive, prefixes count), or ``""``."""
    known = list(known)
    lower = name.lower()
    close = [k for k in known if k.lower() == lower or (lower and k.lower().startswith(lower))]
    close = close or difflib.get_close_matches(lower, known, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


class Registry(Mapping[str, T], Generic[T]):
    """Entries registered by name, with the built-in ones imported on first use.

    Args:
        what: what an entry is, for messages (``"dataset"``, ``"objective"``).
        package: package of the built-in modules (``__name__`` of the registering package, usually).
        builtins: built-in entry names, each imported from ``package.<module>``: a sequence when every name is
            its own module, or a mapping ``name -> module``. Order is kept (``--help`` lists commands in it).
        error: the ``UserError`` subclass raised for an unknown name (``ConfigError``, ``WriterError``).
        key: where the name came from, added to the message (``"objective.name"``).
    """

    def __init__(self, what: str, *, package: str = "", builtins: Union[Sequence[str], Mapping[str, str]] = (),
                 error: Type[UserError] = UserError, key: str = ""):
        self.what, self.package, self.error, self.key = what, package, error, key
        self._builtins: Dict[str, str] = dict(builtins) if isinstance(builtins, Mapping) else \
            {name: name for name in builtins}
        self._entries: Dict[str, T] = {}
        self._loaded = not self._builtins

    # --- registration -------------------------------------------------------------------------------------
    def register(self, name: str, entry: object = _MISSING) -> Callable[[T], T]:
        """``@registry.register("x")`` on the entry (or ``registry.register("x", entry)``); returns the entry.

        Registering another object under a taken name is an error naming both modules; registering the very
        same object again (a module imported twice under one name) is not.
        """
        def wrap(value: T) -> T:
            old = self._entries.get(name, _MISSING)
            if old is not _MISSING and old is not value:
                raise ValueError(f"{self.what} '{name}' is registered twice: by {_origin(old)} and by {_origin(value)}")
            self._entries[name] = value
            return value
        if entry is not _MISSING:
            return wrap(entry)  # type: ignore[arg-type]
        return wrap

    # --- loading ------------------------------------------------------------------------------------------
    def load(self) -> "Registry[T]":
        """Import every built-in module once; an ``ImportError`` there propagates (it is a broken install)."""
        if self._loaded:
            return self
        self._loaded = True     # set first: a built-in module may look itself up while it is being imported
        try:
            for module in dict.fromkeys(self._builtins.values()):
                importlib.import_module(f"{self.package}.{module}" if self.package else module)
            missing = [name for name in self._builtins if name not in self._entries]
            if missing:
                raise ImportError(f"built-in {self.what} {', '.join(missing)} not registered by "
                                  f"{', '.join(self.package + '.' + self._builtins[n] for n in missing)}")
        except BaseException:
            self._loaded = False
            raise
        return self

    # --- lookup -------------------------------------------------------------------------------------------
    def names(self) -> List[str]:
        """Every known name, sorted, WITHOUT importing the built-in modules (declared names count)."""
        return sorted(set(self._builtins) | set(self._entries))

    def check(self, name: str, key: str = "") -> None:
        """Raise the registry's one-line error when ``name`` is unknown (closest name and all known ones).

        ``key`` names where the name came from when it differs from the registry's own (``eval_kind``).
        """
        if name not in self._builtins and name not in self._entries:
            known = self.names()
            where = f" ({key or self.key})" if key or self.key else ""
            raise self.error(f"unknown {self.what} '{name}'{where}{suggest(name, known)} (known: {', '.join(known)})")

    def lookup(self, name: str) -> T:
        """The entry ``name``, importing the built-ins first; unknown: the one-line error of ``check``."""
        self.check(name)
        return self.load()._entries[name]

    # --- Mapping: every access sees the built-ins ---------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        return self.load()._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.load()._entries)

    def __len__(self) -> int:
        return len(self.load()._entries)

    def __contains__(self, name: object) -> bool:
        return name in self.load()._entries

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {sorted(self._entries)})"


def _origin(value: object) -> str:
    module = getattr(value, "__module__", None) or type(value).__module__
    return f"{module}.{getattr(value, '__qualname__', type(value).__qualname__)}"

