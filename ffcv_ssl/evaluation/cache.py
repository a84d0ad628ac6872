"""Feature cache: frozen-backbone features of one (checkpoint, beton) pair, on disk, read memory-mapped.

Evaluations outnumber pretrainings (label budgets x datasets per checkpoint, Cole et al. 2022, Fig 2 and
Table 1), so features are extracted once and every probe reads them from here. Features are fp16 (1M x
2048 is 4 GB) in a ``.npy`` opened with ``mmap_mode='r'``: the page cache holds the only copy, and probes
convert chunk by chunk. A cache is keyed by the sha256 of the checkpoint and of the beton (and a tag of
the eval pipeline), so a retrained checkpoint or a rewritten beton never reuses stale features.

Layout of a cache directory::

    manifest.json        schema, hashes, arch, width, count, pipeline, label levels (written last)
    features.npy         (count, width) float16
    labels.npy           (count,) int64, the fine label
    ids.npy              (count,) int64, the beton's sample ids (to align two caches)
    level_<name>.npy     (count,) int64, one per label level of the beton, coarse to fine

The directory is written under a hidden temporary name and renamed when complete, so a directory with
the final name is always a whole cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ffcv_ssl import __version__
from ffcv_ssl.errors import UserError
from ffcv_ssl.files import read_json
from ffcv_ssl.util import pid_alive

SCHEMA = "ffcv-ssl/features/1"
MANIFEST = "manifest.json"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LEVEL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class CacheError(UserError):
    """A feature cache that is missing, incomplete, foreign, or asked for something it does not hold."""


def _check_sha(value: str, what: str) -> str:
    value = str(value).lower()
    if not _HEX64.match(value):
        raise CacheError(f"{what} {value!r} is not a sha256 hex digest (64 hex characters)")
    return value


def pipeline_tag(pipeline: Mapping[str, Any]) -> str:
    """Short stable tag of an eval-pipeline description (crop, resolution, normalisation, pooling).

    Two descriptions that differ in any value get different tags, hence different cache directories.
    """
    canonical = json.dumps(dict(pipeline), sort_keys=True, separators=(",", ":"), default=str)
    return "p" + hashlib.sha256(canonical.encode()).hexdigest()[:11]


def cache_dir_for(root: os.PathLike | str, checkpoint_sha: str, beton_sha: str, pipeline_tag: str) -> Path:
    """Where the cache of (checkpoint, beton, pipeline) lives under ``root``.

    The hashes are in the name, so a changed checkpoint or beton maps to a new directory and the old
    cache is simply never found again (``is_valid`` double-checks against the manifest).
    """
    ckpt = _check_sha(checkpoint_sha, "checkpoint sha256")
    beton = _check_sha(beton_sha, "beton sha256")
    if not _TAG.match(str(pipeline_tag)):
        raise CacheError(f"pipeline tag {pipeline_tag!r} must be 1-64 characters of letters, digits, '.', '_', '-'")
    return Path(root) / f"{ckpt[:16]}-{beton[:16]}-{pipeline_tag}"


class FeatureCache:
    """A complete cache, opened read-only; arrays are memory-mapped (nothing is loaded until touched).

    Attributes:
        directory: the cache directory.
        manifest: the parsed ``manifest.json``.
        features: ``(count, width)`` float16 memmap.
        labels: ``(count,)`` int64 memmap of the fine labels.
        ids: ``(count,)`` int64 memmap of the beton's sample ids.
        levels: label level name -> ``(count,)`` int64 memmap, coarse to fine.
    """

    def __init__(self, directory: Path, manifest: Dict[str, Any], features: np.ndarray, labels: np.ndarray,
                 ids: np.ndarray, levels: Dict[str, np.ndarray]):
        self.directory, self.manifest = directory, manifest
        self.features, self.labels, self.ids, self.levels = features, labels, ids, levels

    @classmethod
    def open(cls, directory: os.PathLike | str) -> "FeatureCache":
        """Open a complete cache; a missing, partial or foreign one is a one-line ``CacheError``."""
        directory = Path(directory)
        path = directory / MANIFEST
        if not path.is_file():
            raise CacheError(f"{directory}: not a feature cache (no {MANIFEST}); extract features first")
        manifest = read_json(path, CacheError, "delete the directory to re-extract")
        if manifest.get("schema") != SCHEMA:
            raise CacheError(f"{path}: unknown feature-cache schema {manifest.get('schema')!r} "
                             f"(this tool reads {SCHEMA}); delete the directory to re-extract")
        count, width = int(manifest["count"]), int(manifest["width"])

        def load(name: str, shape: tuple, dtype: str) -> np.ndarray:
            try:
                arr = np.load(directory / name, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise CacheError(f"{directory / name}: unreadable ({exc}); delete {directory} to re-extract") from None
            if arr.shape != shape or arr.dtype != np.dtype(dtype):
                raise CacheError(f"{directory / name}: holds {arr.dtype}{list(arr.shape)}, the manifest says "
                                 f"{dtype}{list(shape)}; delete {directory} to re-extract")
            return arr

        features = load("features.npy", (count, width), "float16")
        labels = load("labels.npy", (count,), "int64")
        ids = load("ids.npy", (count,), "int64")
        levels = {name: load(f"level_{name}.npy", (count,), "int64") for name in manifest.get("level_names", [])}
        return cls(directory, manifest, features, labels, ids, levels)

    # --- identity -------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    @property
    def width(self) -> int:
        return int(self.manifest["width"])

    @property
    def arch(self) -> str:
        return str(self.manifest["arch"])

    @property
    def num_classes(self) -> Optional[int]:
        value = self.manifest.get("num_classes")
        return None if value is None else int(value)

    @property
    def level_names(self) -> List[str]:
        return list(self.manifest.get("level_names", []))

    def is_valid(self, checkpoint_sha: str, beton_sha: str, pipeline_tag: Optional[str] = None) -> bool:
        """True when this cache was extracted from exactly this checkpoint and beton (and pipeline)."""
        same = (self.manifest.get("checkpoint_sha256") == str(checkpoint_sha).lower()
                and self.manifest.get("beton_sha256") == str(beton_sha).lower())
        return same and (pipeline_tag is None or self.manifest.get("pipeline_tag") == pipeline_tag)

    # --- labels ---------------------------------------------------------------------------------
    def label_array(self, level: str = "label") -> np.ndarray:
        """Labels at ``level`` (``"label"`` is the fine label); an absent level is a one-line error."""
        if level == "label":
            return self.labels
        if level not in self.levels:
            have = ", ".join(self.levels) or "none"
            raise CacheError(f"{self.directory}: the features have no label level {level!r} (levels: {have}); "
                             "extract from a beton whose manifest lists it under label_levels")
        return self.levels[level]

    def require_levels(self, names: Sequence[str]) -> None:
        """Check, before any work, that every asked label level is in the cache."""
        for name in names:
            self.label_array(name)

    def representation(self) -> List[Dict[str, Any]]:
        """What produced these features: checkpoint, arch, width and eval pipeline (one entry per backbone)."""
        m = self.manifest
        return [{"checkpoint_sha256": m.get("checkpoint_sha256"), "arch": m.get("arch"), "width": self.width,
                 "pipeline_tag": m.get("pipeline_tag")}]

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r}, count={self.count}, width={self.width}, arch={self.arch!r})"


def check_same_representation(train: Any, test: Any) -> None:
    """One-line error, before any work, unless both caches hold features of the same backbone(s) and pipeline.

    A probe trained on one checkpoint's features and scored on another's would report nonsense quietly.
    Works for ``FeatureCache`` and ``ConcatenatedCache`` (part by part).
    """
    a, b = train.representation(), test.representation()
    if len(a) != len(b):
        raise CacheError(f"{train} concatenates {len(a)} backbone(s) but {test} {len(b)}; concatenate the same ones")
    for i, (x, y) in enumerate(zip(a, b)):
        for key in ("checkpoint_sha256", "arch", "width", "pipeline_tag"):
            if x[key] != y[key]:
                part = f" (part {i})" if len(a) > 1 else ""
                raise CacheError(f"training and evaluation features differ in {key}{part}: {x[key]} vs {y[key]}; "
                                 "extract both splits with the same checkpoint and eval pipeline")


def find_cache(root: os.PathLike | str, checkpoint_sha: str, beton_sha: str,
               pipeline_tag: str) -> Optional[FeatureCache]:
    """The valid cache for this (checkpoint, beton, pipeline) under ``root``, or None (then extract)."""
    directory = cache_dir_for(root, checkpoint_sha, beton_sha, pipeline_tag)
    if not (directory / MANIFEST).is_file():
        return None
    try:
        cache = FeatureCache.open(directory)
    except CacheError:
        return None
    return cache if cache.is_valid(checkpoint_sha, beton_sha, pipeline_tag) else None


class FeatureCacheWriter:
    """Streams batches of features into a new cache; nothing appears under the final name until ``commit``.

    Arrays are preallocated as ``.npy`` memmaps in a hidden temporary directory beside the final one, so
    extraction holds one batch in RAM at a time, whatever ``count`` is. Use as a context manager: a clean
    exit commits (and checks that every row was written), an exception removes the temporary directory.

    Args:
        directory: final cache directory (usually ``cache_dir_for(...)``); replaced if it already exists.
        count: number of samples (the beton's), known before extraction.
        width: feature width (``model.num_features``).
        checkpoint_sha256, beton_sha256: identities the cache is valid for.
        arch: timm architecture of the backbone.
        pipeline: description of the eval pipeline (resize, crop ratio, normalisation, pooling...).
        level_names: label levels to store, coarse to fine (the beton's ``label_levels`` order).
        num_classes, class_names: of the fine label, copied from the beton manifest.
        label_levels: the beton manifest's ``label_levels`` (names, counts, ``of_label``), kept so that
            ``Hierarchy.from_manifest(cache.manifest)`` works from the cache alone.
        extra: anything else to record (dataset, split, checkpoint path, extraction time...).
    """

    def __init__(self, directory: os.PathLike | str, *, count: int, width: int, checkpoint_sha256: str,
                 beton_sha256: str, arch: str, pipeline: Mapping[str, Any], level_names: Sequence[str] = (),
                 num_classes: Optional[int] = None, class_names: Optional[Sequence[str]] = None,
                 label_levels: Optional[Mapping[str, Any]] = None, extra: Optional[Mapping[str, Any]] = None):
        self.directory = Path(directory)
        if count <= 0 or width <= 0:
            raise CacheError(f"{self.directory}: a feature cache needs count > 0 and width > 0 "
                             f"(got count={count}, width={width})")
        bad = [n for n in level_names if n == "label" or not _LEVEL.match(str(n))]
        if bad:
            raise CacheError(f"label level name(s) {bad} cannot be stored; use letters, digits, '_', '.', '-' "
                             "and not 'label'")
        self.count, self.width = int(count), int(width)
        self.level_names = [str(n) for n in level_names]
        tag = pipeline_tag(pipeline)
        self.manifest: Dict[str, Any] = {
            "schema": SCHEMA, "tool_version": __version__,
            "checkpoint_sha256": _check_sha(checkpoint_sha256, "checkpoint sha256"),
            "beton_sha256": _check_sha(beton_sha256, "beton sha256"),
            "arch": str(arch), "width": self.width, "count": self.count, "dtype": "float16",
            "pipeline": dict(pipeline), "pipeline_tag": tag, "level_names": self.level_names,
            "num_classes": None if num_classes is None else int(num_classes),
            "class_names": list(class_names) if class_names is not None else None,
            "label_levels": dict(label_levels) if label_levels is not None else None,
            **dict(extra or {}),
        }
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.directory)
        self._tmp = self.directory.with_name(f".{self.directory.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self._tmp.mkdir()
        self._t0 = time.perf_counter()
        self.rows = 0
        self._done = False
        self.cache: Optional[FeatureCache] = None   # set by commit()
        mm = np.lib.format.open_memmap
        self._features = mm(self._tmp / "features.npy", mode="w+", dtype=np.float16, shape=(self.count, self.width))
        self._labels = mm(self._tmp / "labels.npy", mode="w+", dtype=np.int64, shape=(self.count,))
        self._ids = mm(self._tmp / "ids.npy", mode="w+", dtype=np.int64, shape=(self.count,))
        self._levels = {n: mm(self._tmp / f"level_{n}.npy", mode="w+", dtype=np.int64, shape=(self.count,))
                        for n in self.level_names}

    def add(self, features: Any, labels: Any, ids: Any, levels: Optional[Mapping[str, Any]] = None) -> None:
        """Append one batch (numpy arrays or torch tensors, on any device) in sample order."""
        feats = _to_numpy(features)
        n = feats.shape[0] if feats.ndim == 2 else -1
        if feats.ndim != 2 or feats.shape[1] != self.width:
            raise CacheError(f"{self.directory}: a batch of features has shape {list(feats.shape)}, "
                             f"expected [batch, {self.width}]")
        if self.rows + n > self.count:
            raise CacheError(f"{self.directory}: {self.rows + n} rows written but the cache holds {self.count}; "
                             "pass the beton's sample count as count")
        columns = {"labels": _to_numpy(labels), "ids": _to_numpy(ids)}
        levels = dict(levels or {})
        if set(levels) != set(self.level_names):
            raise CacheError(f"{self.directory}: batch has label levels {sorted(levels)}, "
                             f"the cache was created for {self.level_names}")
        columns.update({f"level {k}": _to_numpy(v) for k, v in levels.items()})
        for name, col in columns.items():
            if col.shape != (n,):
                raise CacheError(f"{self.directory}: batch {name} has shape {list(col.shape)}, expected [{n}]")
        with np.errstate(over="ignore", invalid="ignore"):   # overflow is reported below, in words
            half = feats.astype(np.float16)
        if not np.isfinite(half).all():
            raise CacheError(f"{self.directory}: features of rows {self.rows}..{self.rows + n - 1} are not finite "
                             "in float16 (NaN, or beyond +-65504); check the checkpoint")
        sl = slice(self.rows, self.rows + n)
        self._features[sl] = half
        self._labels[sl] = columns["labels"]
        self._ids[sl] = columns["ids"]
        for k, v in levels.items():
            self._levels[k][sl] = _to_numpy(v)
        self.rows += n

    def commit(self) -> FeatureCache:
        """Flush, write the manifest last, rename into place; returns the opened cache."""
        if self._done:
            raise CacheError(f"{self.directory}: this writer was already committed or aborted")
        if self.rows != self.count:
            self.abort()
            raise CacheError(f"{self.directory}: only {self.rows} of {self.count} rows were written; nothing was "
                             "kept (did extraction skip samples?)")
        for arr in [self._features, self._labels, self._ids, *self._levels.values()]:
            arr.flush()
        self._features = self._labels = self._ids = None  # type: ignore[assignment]
        self._levels = {}
        self.manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.manifest["extract_seconds"] = round(time.perf_counter() - self._t0, 3)
        (self._tmp / MANIFEST).write_text(json.dumps(self.manifest, indent=1) + "\n")
        old = None
        if self.directory.exists():  # a stale or invalid cache: move aside, then swap in the new one
            old = self.directory.with_name(f".{self.directory.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.replace(self.directory, old)
        os.replace(self._tmp, self.directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._done = True
        self.cache = FeatureCache.open(self.directory)
        return self.cache

    def abort(self) -> None:
        """Drop everything written so far."""
        self._features = self._labels = self._ids = None  # type: ignore[assignment]
        self._levels = {}
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._done = True

    def __enter__(self) -> "FeatureCacheWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()




def remove_stale_temporaries(directory: os.PathLike | str) -> List[Path]:
    """Remove ``.NAME.tmp-PID-*`` / ``.NAME.old-PID-*`` directories beside ``directory`` whose writer is dead.

    An extraction killed with SIGKILL (a preempted job, the OOM killer) cannot remove its temporary
    directory, which holds up to the whole feature matrix; the next extraction of the same cache does.
    A directory whose PID is alive (another extraction running now) is left alone.
    """
    directory = Path(directory)
    pattern = re.compile(rf"^\.{re.escape(directory.name)}\.(?:tmp|old)-(\d+)-[0-9a-f]+$")
    removed = []
    if not directory.parent.is_dir():
        return removed
    for entry in os.scandir(directory.parent):
        m = pattern.match(entry.name)
        if m and entry.is_dir(follow_symlinks=False) and not pid_alive(int(m.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _to_numpy(value: Any) -> np.ndarray:
    """numpy view of a numpy array or a torch tensor (on any device), without importing torch."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
