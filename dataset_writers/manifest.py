"""The JSON manifest beside every beton: what is inside, where it came from, and its checksum.

``Manifest`` is the one typed form of that file: the writers build it, every reader gets attributes
(``m.num_classes``, ``m.sources[0].dataset``) instead of string keys, and a file with a missing or mistyped
key is one line naming the file and the key when it is read, not a ``KeyError`` somewhere later.
``Manifest.save`` writes the JSON the writers have always produced (same keys, order and values), so
betons written before this class existed still read.

Parts whose layout belongs to another module stay plain JSON values: ``corruption`` entries
(``CorruptionChain.manifest``), ``label_noise`` (``corruptions.labels.label_noise_record``), ``image``
(storage options, or a pool's note) and ``reader_options`` (each reader's own options).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, TypeVar, Union

import numpy as np

from ffcv_ssl import __version__
from ffcv_ssl.files import atomic_write_text, read_json

from .errors import WriterError

SCHEMA = "ffcv-ssl/manifest/1"
INLINE_IDS_MAX = 100_000     # above this, the ids live only in the beton's ``index`` field (+ their hash)

R = TypeVar("R", bound="_Record")
_OMIT_NONE = {"omit_if_none": True}     # field metadata: the key is left out of the JSON while the value is None


def manifest_path(beton: os.PathLike | str) -> Path:
    """``data/imagenet_train.beton`` -> ``data/imagenet_train.manifest.json``."""
    beton = Path(beton)
    stem = beton.name[: -len(".beton")] if beton.name.endswith(".beton") else beton.name
    return beton.with_name(stem + ".manifest.json")


def ids_digest(ids: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(ids, dtype="<i8").tobytes()).hexdigest()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, _Record):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


class _Record:
    """A dataclass that is one JSON object of the manifest: keys in field order, checked when read."""

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if not (f.metadata.get("omit_if_none") and getattr(self, f.name) is None)}

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str, key: str = "") -> R:
        """``data`` (parsed JSON) as this record; ``where`` (the file) and ``key`` (the dotted path) name bad values."""
        if not isinstance(data, dict):
            raise _mistyped(where, key.rstrip(".") or "(top level)", data, "an object")
        hints = _hints(cls)
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                values[f.name] = _convert(data[f.name], hints[f.name], where, key + f.name)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise WriterError(f"{where}: the manifest has no '{key}{f.name}' (written by another tool, or edited); "
                                  "rewrite the beton with 'ffcv-ssl write'")
        return cls(**values)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


_JSON_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
               float: "a number", type(None): "null"}


def _mistyped(where: str, key: str, value: Any, expected: str) -> WriterError:
    got = _JSON_NAMES.get(type(value), type(value).__name__)
    return WriterError(f"{where}: manifest key '{key}' is {got} ({json.dumps(value)[:40]}), expected {expected}; "
                       "rewrite the beton with 'ffcv-ssl write'")


def _is(value: Any, tp: Any) -> bool:
    """JSON scalar ``value`` has type ``tp``; ``true`` is no integer, though Python's bool is an int."""
    if tp is Any:
        return True
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _convert(value: Any, tp: Any, where: str, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; nested records become their dataclasses."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:                                          # Optional[X]
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, where, key)
    if isinstance(tp, type) and issubclass(tp, _Record):
        return tp.from_dict(value, where, key + ".")
    if origin is list:
        if not isinstance(value, list):
            raise _mistyped(where, key, value, "a list")
        (item,) = args
        if item in _JSON_NAMES:            # a list of scalars (up to 100,000 ids): one quick pass
            bad = next((i for i, v in enumerate(value) if not _is(v, item)), None)
            if bad is not None:
                raise _mistyped(where, f"{key}.{bad}", value[bad], _JSON_NAMES[item])
            return value
        return [_convert(v, item, where, f"{key}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _mistyped(where, key, value, "an object")
        return {k: _convert(v, args[1], where, f"{key}.{k}") for k, v in value.items()}
    if not _is(value, tp):
        raise _mistyped(where, key, value, _JSON_NAMES.get(tp, str(tp)))
    return value


@dataclass
class LabelLevel(_Record):
    """One coarser label level (e.g. iNat21's ``family``), so evaluation can map predictions up the hierarchy."""

    names: List[str]
    counts: List[int]          # samples per class of this level, in this beton
    of_label: List[int]        # level class of every fine label (-1: no sample of that label in the split read)


@dataclass
class Ids(_Record):
    """The sample ids in storage order (the ``index`` field), their hash, and the ids inline when few."""

    kind: str                  # what an id is (reader-specific: a line number, an observation id, ...)
    count: int
    sha256: str                # ``ids_digest`` of the ids
    values: Optional[List[int]] = field(default=None, metadata=_OMIT_NONE)    # up to INLINE_IDS_MAX ids


@dataclass
class Subset(_Record):
    """A nested subset (``dataset_writers.subsets.subset_record``): enough to regenerate the selection."""

    n: int
    of: int
    seed: int
    balanced: bool
    rule: str
    of_ids_sha256: Optional[str] = field(default=None, metadata=_OMIT_NONE)   # the full split's ids


@dataclass(kw_only=True)
class Source(_Record):
    """Where a range of labels came from: the one split written, or one part of a pool.

    Pool parts carry the part's own facts too (the fields after ``split`` up to ``of``, and after
    ``num_classes``); a split's own source has none of them and they are not written.
    """

    source: int
    dataset: str
    split: str
    path: Optional[str] = None                  # pool parts: the part beton, as given to 'write pool'
    sha256: Optional[str] = None
    num_samples: Optional[int] = None           # samples taken from the part
    of: Optional[int] = None                    # samples the part holds
    label_offset: int
    num_classes: int
    class_names: Optional[List[str]] = None
    subset: Optional[Subset] = None             # the pool's ``PATH:N`` selection from the part
    part_subset: Optional[Subset] = None        # the part's own subset (from its manifest)
    corruption: Optional[List[Dict[str, Any]]] = None
    image: Optional[Dict[str, Any]] = None
    label_levels: Optional[List[str]] = None    # the part's label level names (pools keep no levels)

    @property
    def is_pool_part(self) -> bool:
        return self.path is not None

    def to_dict(self) -> Dict[str, Any]:
        data = super().to_dict()
        if self.is_pool_part:
            return data
        return {k: data[k] for k in ("source", "dataset", "split", "label_offset", "num_classes")}


@dataclass
class Span(_Record):
    min: int
    mean: float
    max: int


@dataclass
class ImageStats(_Record):
    """Image sizes (px) and bytes; every key is absent when nothing was measured (pools: no original sizes)."""

    original_height: Optional[Span] = field(default=None, metadata=_OMIT_NONE)
    original_width: Optional[Span] = field(default=None, metadata=_OMIT_NONE)
    stored_height: Optional[Span] = field(default=None, metadata=_OMIT_NONE)
    stored_width: Optional[Span] = field(default=None, metadata=_OMIT_NONE)
    max_stored_area: Optional[int] = field(default=None, metadata=_OMIT_NONE)
    stored_bytes: Optional[int] = field(default=None, metadata=_OMIT_NONE)
    mean_stored_bytes: Optional[float] = field(default=None, metadata=_OMIT_NONE)


@dataclass
class Skipped(_Record):
    """An entry left out with ``--on-error skip``."""

    file: str
    reason: str


@dataclass
class WriteInfo(_Record):
    seconds: float
    workers: int                # 0 for pools (stored bytes are copied in the parent)
    images_per_s: float


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass(kw_only=True)
class Manifest(_Record):
    """The manifest of one beton (docs/datasets.md, "Manifest"); fields in the order they are written.

    ``extra`` holds keys this version does not know (a file written by a newer tool): they are kept,
    and written back after the known ones.
    """

    schema: str = SCHEMA
    tool_version: str = __version__
    created: str = field(default_factory=_now)
    dataset: str
    split: str
    num_samples: int
    num_classes: int
    class_names: List[str]
    counts_per_class: List[int]
    label_levels: Dict[str, LabelLevel]         # coarse to fine
    fields: Dict[str, str]                      # field name -> ffcv field type, in storage order
    reader_options: Dict[str, Any]
    image: Dict[str, Any]
    ids: Ids
    sources: List[Source]
    subset: Optional[Subset]
    corruption: List[Dict[str, Any]]
    image_stats: ImageStats
    skipped: List[Skipped]
    sha256: str                                 # of the beton file
    write: WriteInfo
    label_noise: Optional[Dict[str, Any]] = field(default=None, metadata=_OMIT_NONE)
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        data = super().to_dict()
        del data["extra"]
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: Any, where: str, key: str = "") -> "Manifest":
        manifest = super().from_dict(data, where, key)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        manifest.extra = {k: v for k, v in data.items() if k not in known}
        return manifest

    @classmethod
    def read(cls, beton: os.PathLike | str) -> "Manifest":
        """The manifest of ``beton``; a missing, foreign or incomplete one is a one-line error naming the file."""
        path = manifest_path(beton)
        if not path.exists():
            raise WriterError(f"{beton}: no manifest beside it ({path.name}); was it written by 'ffcv-ssl write'?")
        data = read_json(path, WriterError, "rewrite the beton")
        schema = data.get("schema") if isinstance(data, dict) else None
        if schema != SCHEMA:
            raise WriterError(f"{path}: unknown manifest schema {schema!r} (this tool reads {SCHEMA})")
        return cls.from_dict(data, str(path))

    def save(self, path: os.PathLike | str) -> Path:
        """Atomic write (temp + rename) of the JSON to ``path`` (``manifest_path(beton)``).

        Named ``save``, not ``write``: ``write`` is the manifest's key for the write's timing."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n")


def read_manifest(beton: os.PathLike | str) -> Manifest:
    """``Manifest.read``: the typed manifest beside ``beton``."""
    return Manifest.read(beton)
