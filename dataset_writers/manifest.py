"""The JSON manifest beside every beton: what is inside, where it came from, and its checksum."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np

from ffcv_ssl import __version__
from ffcv_ssl.files import atomic_write_text

from .errors import WriterError

SCHEMA = "ffcv-ssl/manifest/1"
INLINE_IDS_MAX = 100_000     # above this, the ids live only in the beton's ``index`` field (+ their hash)


def manifest_path(beton: os.PathLike | str) -> Path:
    """``data/imagenet_train.beton`` -> ``data/imagenet_train.manifest.json``."""
    beton = Path(beton)
    stem = beton.name[: -len(".beton")] if beton.name.endswith(".beton") else beton.name
    return beton.with_name(stem + ".manifest.json")


def ids_digest(ids: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(ids, dtype="<i8").tobytes()).hexdigest()


def _jsonable(obj: Any) -> Any:
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


def write_manifest(path: Path, manifest: Dict[str, Any]) -> Path:
    """Atomic write (temp + rename) of a manifest dict."""
    data = {"schema": SCHEMA, "tool_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **manifest}
    return atomic_write_text(path, json.dumps(_jsonable(data), indent=1, sort_keys=False) + "\n")


def read_manifest(beton: os.PathLike | str) -> Dict[str, Any]:
    """The manifest of ``beton``; a missing or foreign one is a one-line error naming the file."""
    path = manifest_path(beton)
    if not path.exists():
        raise WriterError(f"{beton}: no manifest beside it ({path.name}); was it written by 'ffcv-ssl write'?")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WriterError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); rewrite the beton") from None
    if data.get("schema") != SCHEMA:
        raise WriterError(f"{path}: unknown manifest schema {data.get('schema')!r} (this tool reads {SCHEMA})")
    return data
