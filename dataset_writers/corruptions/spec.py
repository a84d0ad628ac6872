"""Corruption specs: ``name:k=v,k=v`` text <-> validated ``CorruptionSpec``, presets for the paper's conditions.

Parsing happens before any work, so a typo in ``--corrupt`` is one line naming the spec and the fix.
The canonical text (``describe()``) lists every parameter sorted by key, defaults included, so it is a
stable id for results, file names and seeds: ``jpeg`` and ``jpeg:quality=15`` are the same corruption.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple, Union

from ..errors import WriterError
from .registry import CORRUPTIONS, CorruptionInfo, Params, format_value, get_corruption, suggest

# The five conditions of the paper's data-quality lens (Fig. 4), in its order. The paper gives no
# parameters; these are ours, justified in docs/corruptions.md.
PRESETS: Dict[str, Tuple[str, ...]] = {
    "paper_salt_pepper": ("salt_pepper:p=0.09",),
    "paper_jpeg": ("jpeg:quality=15",),
    "paper_resize": ("resize:size=256",),
    "paper_downsample2x": ("downsample:factor=2,size=256",),
    "paper_downsample4x": ("downsample:factor=4,size=256",),
}
PAPER_CONDITIONS: Tuple[str, ...] = tuple(PRESETS)

SpecLike = Union[str, "CorruptionSpec", Mapping[str, Any]]


@dataclass(frozen=True)
class CorruptionSpec:
    """One parsed corruption: a registered name and its validated parameters."""

    name: str
    params: Params

    @property
    def info(self) -> CorruptionInfo:
        return get_corruption(self.name)

    @property
    def kind(self) -> str:
        return self.info.kind

    def describe(self) -> str:
        """Canonical text, e.g. ``downsample:factor=4,size=256`` (parameters sorted, all present)."""
        text = self.params.canonical()
        return f"{self.name}:{text}" if text else self.name

    def slug(self) -> str:
        """File-name-safe form of ``describe()``: ``downsample-factor4-size256``."""
        pairs = sorted(self.params.as_dict().items())
        return "-".join([self.name] + [f"{k}{format_value(v)}" for k, v in pairs])

    def to_json(self) -> Dict[str, Any]:
        """JSON-able form for the manifest (the chain adds the seed): name, parameters, canonical id, kind."""
        return {"name": self.name, "params": self.params.as_dict(), "id": self.describe(), "kind": self.kind}

    def __str__(self) -> str:
        return self.describe()


def make_spec(name: str, **params: Any) -> CorruptionSpec:
    """``CorruptionSpec`` from a name and keyword parameters (missing ones take their defaults)."""
    info = get_corruption(name)
    known = [f for f, *_ in info.parameters()]
    for key in params:
        if key not in known:
            listing = ", ".join(known) or "none"
            raise WriterError(f"{name} has no parameter '{key}'{suggest(key, known)} (parameters: {listing})")
    return CorruptionSpec(name, info.params(**params))


def parse_corruption(text: SpecLike) -> CorruptionSpec:
    """One spec: ``"jpeg:quality=10"``, ``"jpeg"`` (defaults), a ``CorruptionSpec``, or a manifest dict.

    Raises:
        WriterError: unknown name (with the closest one), malformed text, unknown or repeated parameter,
            value of the wrong type or out of range; the message quotes the spec.
    """
    if isinstance(text, CorruptionSpec):
        return text
    if isinstance(text, Mapping):
        if "name" not in text:
            raise WriterError(f"corruption entry {dict(text)!r} has no 'name'")
        name = str(text["name"])
        return _with_context(repr(dict(text)), name, lambda: make_spec(name, **dict(text.get("params") or {})))
    if not isinstance(text, str):
        raise WriterError(f"corruption {text!r} must be text like 'jpeg:quality=10'")
    spec = text.strip()
    name, sep, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise WriterError(f"corruption '{text}': no name; write NAME or NAME:k=v,k=v (e.g. jpeg:quality=10)")
    if name in PRESETS:
        raise WriterError(f"corruption '{text}': '{name}' is a preset of several steps; pass it to "
                          "parse_corruptions (or --corrupt) on its own")
    if name not in CORRUPTIONS:
        raise WriterError(f"corruption '{text}': unknown corruption '{name}'{suggest(name, _all_names())} "
                          f"(known: {', '.join(sorted(CORRUPTIONS))}; presets: {', '.join(PRESETS)})")
    params: Dict[str, str] = {}
    if sep and not rest.strip():
        raise WriterError(f"corruption '{text}': nothing after ':'; write {name} for the defaults or {name}:k=v")
    for item in rest.split(",") if rest.strip() else []:
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key or not value:
            raise WriterError(f"corruption '{text}': '{item.strip()}' is not k=v; write e.g. {name}:"
                              f"{next(iter(get_corruption(name).parameters()), ('k',))[0]}=VALUE")
        if key in params:
            raise WriterError(f"corruption '{text}': parameter '{key}' is given twice")
        params[key] = value
    return _with_context(f"'{text}'", name, lambda: make_spec(name, **params))


def _with_context(where: str, name: str, build: Callable[[], CorruptionSpec]) -> CorruptionSpec:
    """Run ``build`` and prefix any error with the spec as the user wrote it."""
    try:
        return build()
    except WriterError as exc:
        message = str(exc)
        message = message[len(name) + 2:] if message.startswith(f"{name}: ") else message
        raise WriterError(f"corruption {where}: {message}") from None


def _all_names() -> List[str]:
    return sorted(CORRUPTIONS) + list(PRESETS)


def parse_corruptions(texts: Union[SpecLike, Sequence[SpecLike]]) -> Tuple[CorruptionSpec, ...]:
    """An ordered chain of specs: each item is a spec, a preset name, a ``+``-joined chain or ``none``.

    An empty string is an error (an unset variable in a sweep must not silently mean "clean").

    ``["resize:size=256", "downsample:size=256,factor=4"]``, ``["paper_downsample4x"]`` and the canonical
    chain text ``"resize:size=256+jpeg:quality=15"`` (what ``CorruptionChain.describe()`` returns) all work,
    so ids in results files parse back to the same chain. Every item is validated before anything runs.
    """
    if isinstance(texts, (str, CorruptionSpec, Mapping)):
        texts = [texts]
    out: List[CorruptionSpec] = []
    for item in texts:
        if not isinstance(item, str):
            out.append(parse_corruption(item))
            continue
        if item.strip() == "none":
            continue
        for part in item.split("+"):
            part = part.strip()
            if part in PRESETS:
                out.extend(parse_corruption(step) for step in PRESETS[part])
            else:
                out.append(parse_corruption(part))
    return tuple(out)
