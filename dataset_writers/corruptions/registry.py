"""Registry of corruptions (Cole et al. 2022, §4.3 data quality): typed, validated parameters per corruption.

Every corruption is one function registered by name with a frozen dataclass of parameters. Parameters are
checked when the dataclass is built (``__post_init__``), so a bad value fails as one line naming the
corruption and the parameter, before any image is read.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, ClassVar, Dict, Iterable, Optional, Tuple, Type, get_type_hints

import numpy as np

from ffcv_ssl.registry import Registry, suggest

from ..errors import WriterError

PixelFn = Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]
KINDS = ("pixel", "label")


def param(default: Any, *, lo: Optional[float] = None, hi: Optional[float] = None, doc: str = "") -> Any:
    """A parameter field: ``default``, inclusive bounds ``[lo, hi]`` (``None``: unbounded) and a help line."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "doc": doc})


def format_value(value: Any) -> str:
    """Canonical text of a parameter value: ``repr`` for floats (exact round trip) without a trailing ``.0``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def _coerce(owner: str, key: str, kind: type, value: Any) -> Any:
    """``value`` (a Python number or the text of one) as ``kind``; anything else is a one-line error."""
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float)):
            raise ValueError
        if isinstance(value, str):
            value = kind(value.strip())
        elif isinstance(value, (int, float, np.integer, np.floating)):
            value = kind(value)
        else:
            raise ValueError
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise WriterError(f"{owner}: {key}={value!r} is not {what}; write e.g. {key}={'2' if kind is int else '0.5'}"
                          ) from None
    if kind is float and not math.isfinite(value):
        raise WriterError(f"{owner}: {key}={value} must be a finite number")
    return value


@dataclass(frozen=True)
class Params:
    """Base of every parameter dataclass: coerces and range-checks each field, then runs ``check()``."""

    corruption: ClassVar[str] = "?"     # set by ``register_corruption``; names the owner in error messages

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in fields(self):
            kind = hints[f.name]
            value = _coerce(self.corruption, f.name, kind, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
            lo, hi, doc = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("doc", "")
            bad_lo = lo is not None and value < lo
            bad_hi = hi is not None and value > hi
            if bad_lo or bad_hi:
                if lo is not None and hi is not None:
                    rule = f"is outside [{format_value(lo)}, {format_value(hi)}]"
                elif lo is not None:
                    rule = f"must be >= {format_value(lo)}"
                else:
                    rule = f"must be <= {format_value(hi)}"
                raise WriterError(f"{self.corruption}: {f.name}={format_value(value)} {rule} ({doc})")
        self.check()

    def check(self) -> None:
        """Rules that involve several parameters; raise ``WriterError`` naming them."""

    def as_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def canonical(self) -> str:
        """``k=v`` pairs sorted by key, every parameter present (defaults too), so equal params give equal text."""
        return ",".join(f"{k}={format_value(v)}" for k, v in sorted(self.as_dict().items()))


@dataclass(frozen=True)
class CorruptionInfo:
    """A registered corruption.

    Attributes:
        kind: ``pixel``: ``fn(image uint8 HxWx3, params, rng) -> image uint8 HxWx3``;
            ``label``: ``fn(labels, num_classes, params, uniforms) -> labels`` (see ``labels.py``).
        group: family (``noise``, ``digital``, ``resolution``, ``blur``, ``label``), for listings and docs.
    """

    name: str
    fn: Callable[..., Any]
    params: Type[Params]
    kind: str
    group: str
    summary: str

    def parameters(self) -> Iterable[Tuple[str, type, Any, str]]:
        """``(name, type, default, doc)`` of each parameter, in declaration order."""
        hints = get_type_hints(self.params)
        for f in fields(self.params):
            default = None if f.default is MISSING else f.default
            yield f.name, hints[f.name], default, f.metadata.get("doc", "")


CORRUPTIONS: Registry[CorruptionInfo] = Registry("corruption", error=WriterError)


def register_corruption(name: str, *, params: Type[Params], kind: str = "pixel", group: str, summary: str = ""):
    """Decorator: register ``fn`` as corruption ``name`` with parameter dataclass ``params``."""
    if kind not in KINDS:
        raise ValueError(f"corruption kind {kind!r} is not one of {KINDS}")

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        text = summary or (fn.__doc__ or "").strip().split("\n")[0]
        CORRUPTIONS.register(name, CorruptionInfo(name, fn, params, kind, group, text))
        params.corruption = name
        return fn
    return wrap


__all__ = ["CORRUPTIONS", "CorruptionInfo", "Params", "format_value", "get_corruption", "param",
           "register_corruption", "suggest"]


def get_corruption(name: str) -> CorruptionInfo:
    """The registered corruption ``name``; an unknown one is a one-line error with the closest known name."""
    return CORRUPTIONS.lookup(name)
