"""Pools: one beton from several betons (Cole et al. §4.2, Table 2: e.g. 250k iNat21 + 250k ImageNet).

Each part is an existing beton written by ``ffcv-ssl write`` (its manifest gives the class names and
checksum), optionally reduced to its nested subset of N samples (``PATH:N``, same rule as
``--subset``). Samples keep their stored image bytes: they are copied, never decoded and re-encoded, so
a pool costs no extra JPEG generation and writes at disk speed. Labels stay per source: part ``k``'s
labels are shifted by the number of classes of the parts before it, and the ``source`` field says
which part a sample came from. Output goes through ``OrderedBetonFile``, so a pool is byte-identical
whenever its parts and options are.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
from ffcv.fields import IntField, RGBImageField

from ffcv_ssl.console import progress_bar

from .beton import _SENTINEL, OrderedBetonFile, sha256_file, verify_beton
from .beton_check import check_beton_path, open_beton
from .errors import BetonError, WriterError
from .manifest import (INLINE_IDS_MAX, Ids, ImageStats, Manifest, Source, Subset, WriteInfo, ids_digest,
                       manifest_path, read_manifest)
from .subsets import nested_subset, subset_record
from .output import claim_output, os_error, temp_path
from .write import _image_stats

_COUNT = re.compile(r"^(\d+(?:\.\d+)?)([kKmM]?)$")


@dataclass(frozen=True)
class PoolPart:
    """One part of a pool: a beton, and optionally the size of its nested subset."""

    path: Path
    n: Optional[int] = None

    @property
    def spec(self) -> str:
        return f"{self.path}" + (f":{self.n}" if self.n is not None else "")


def parse_part(spec: Union[str, PoolPart]) -> PoolPart:
    """``data/inat.beton`` or ``data/inat.beton:250000`` (also ``:250k``, ``:1M``) -> ``PoolPart``."""
    if isinstance(spec, PoolPart):
        return spec
    path, sep, count = str(spec).rpartition(":")
    if sep and path and _COUNT.match(count):
        value, unit = _COUNT.match(count).groups()  # type: ignore[union-attr]
        n = float(value) * {"": 1, "k": 1_000, "m": 1_000_000}[unit.lower()]
        if n != int(n):
            raise WriterError(f"--part {spec}: the subset size must be a whole number of samples")
        return PoolPart(Path(path), int(n))
    return PoolPart(Path(str(spec)))


class _Part:
    """An opened part: ffcv's Reader for metadata, a read-only memory map for the stored bytes."""

    def __init__(self, part: PoolPart, verify: bool):
        try:
            check_beton_path(part.path)
        except BetonError as exc:
            raise WriterError(f"--part {exc}") from None
        if part.path.suffix != ".beton":
            raise WriterError(f"--part {part.spec}: {part.path} does not end in .beton; give a beton written by "
                              "'ffcv-ssl write'")
        self.part = part
        self.manifest = read_manifest(part.path)
        self.reader = open_beton(part.path, self.manifest)     # header, tables, pointers: before any copy
        names = self.reader.field_names
        for needed in ("image", "label"):
            if needed not in names:
                raise WriterError(f"--part {part.spec}: the beton has no '{needed}' field (fields: {', '.join(names)})")
        if not isinstance(self.reader.handlers["image"], RGBImageField):
            raise WriterError(f"--part {part.spec}: its 'image' field is not an RGB image field")
        n = int(self.reader.num_samples)
        if n != self.manifest.num_samples:
            raise WriterError(f"--part {part.spec}: header says {n} samples, manifest says "
                              f"{self.manifest.num_samples}; rewrite the beton")
        if verify and sha256_file(part.path) != self.manifest.sha256:
            raise WriterError(f"--part {part.spec}: sha256 differs from its manifest (file changed since written); "
                              "rewrite it")
        meta = self.reader.metadata
        self.image = meta[f"f{names.index('image')}"]
        self.labels = np.asarray(meta[f"f{names.index('label')}"], dtype=np.int64)
        self.index = (np.asarray(meta[f"f{names.index('index')}"], dtype=np.int64) if "index" in names
                      else np.arange(n, dtype=np.int64))
        table = self.reader.alloc_table
        order = np.argsort(table["ptr"])
        self.ptrs, self.sizes = table["ptr"][order], table["size"][order]
        self.data = np.memmap(part.path, dtype="<u1", mode="r")
        if len(self.labels) and int(self.labels.max()) >= self.manifest.num_classes:
            raise WriterError(f"--part {part.spec}: label {int(self.labels.max())} >= num_classes "
                              f"{self.manifest.num_classes} in its manifest; rewrite the beton")

    def stored_bytes(self, i: int) -> np.ndarray:
        ptr = self.image[i]["data_ptr"]
        k = int(np.searchsorted(self.ptrs, ptr))
        if k >= len(self.ptrs) or self.ptrs[k] != ptr:
            raise WriterError(f"--part {self.part.spec}: sample {i} points outside its allocation table; rewrite it")
        return self.data[int(ptr): int(ptr) + int(self.sizes[k])]


def write_pool(parts: Sequence[Union[str, PoolPart]], out: os.PathLike | str, *, seed: int = 0, balanced: bool = False,
               overwrite: bool = False, verify_parts: bool = False, description: str = "pool") -> Manifest:
    """Write the pool of ``parts`` to ``out`` (+ manifest); returns the manifest.

    Args:
        parts: betons (``PATH``) or nested subsets of them (``PATH:N``), in pool order.
        seed, balanced: the subset rule for ``PATH:N`` parts (``dataset_writers.subsets``).
        verify_parts: recompute each part's sha256 and compare it with its manifest first.
    """
    specs = [parse_part(p) for p in parts]
    if len(specs) < 1:
        raise WriterError("a pool needs at least one --part")
    with claim_output(Path(out), overwrite) as out:        # exclusive for the whole write (output.py)
        return _write_pool(specs, out, seed, balanced, verify_parts, description)


def _write_pool(specs: List[PoolPart], out: Path, seed: int, balanced: bool, verify_parts: bool,
                description: str) -> Manifest:
    opened = [_Part(p, verify_parts) for p in specs]
    if any(o.part.path.resolve() == out.resolve() for o in opened):
        raise WriterError(f"--out {out} is also a --part; choose another output name")
    for o in opened:
        if o.part.n is not None and not 0 < o.part.n <= len(o.labels):
            raise WriterError(f"--part {o.part.spec}: asks for {o.part.n} samples but the beton holds "
                              f"{len(o.labels)}; lower N or drop ':N'")
    selections = [nested_subset(o.labels, o.part.n, seed, balanced) if o.part.n is not None
                  else np.arange(len(o.labels)) for o in opened]
    fields = {"image": RGBImageField(), "label": IntField(), "source": IntField(), "index": IntField()}
    page_size = max(int(o.reader.page_size) for o in opened)
    total = int(sum(len(s) for s in selections))

    tmp = temp_path(out)
    writer: Optional[OrderedBetonFile] = None
    labels_out = np.empty(total, dtype=np.int64)
    ids_out = np.empty(total, dtype=np.int64)
    sizes = np.zeros((total, 4), dtype=np.int32)
    stored = 0
    t0 = time.perf_counter()
    offsets = np.cumsum([0] + [o.manifest.num_classes for o in opened])
    try:
        writer = OrderedBetonFile(tmp, fields, total, page_size)
        with progress_bar("rate") as bar:
            task = bar.add_task(description, total=total, rate="")
            k = 0
            for source, (o, sel) in enumerate(zip(opened, selections)):
                for i in sel.tolist():
                    row = np.zeros(1, dtype=writer.metadata_type)
                    img = o.image[i]
                    for key in ("mode", "width", "height"):
                        row["f0"][key] = img[key]
                    row["f0"]["data_ptr"] = _SENTINEL
                    label = int(o.labels[i]) + int(offsets[source])
                    row["f1"], row["f2"], row["f3"] = label, source, int(o.index[i])
                    data = o.stored_bytes(i)
                    writer.add(row, [data], f"{o.part.spec} sample {i}")
                    labels_out[k], ids_out[k] = label, o.index[i]
                    sizes[k, 2:] = (img["height"], img["width"])
                    stored += data.nbytes
                    k += 1
                    if k % 1024 == 0 or k == total:
                        bar.update(task, completed=k, rate=f"{k / (time.perf_counter() - t0):,.0f} img/s")
        writer.close()
        verify_beton(tmp, total)
        manifest = _pool_manifest(opened, selections, offsets, labels_out, ids_out, sizes, stored, seed, balanced,
                                  sha256_file(tmp), time.perf_counter() - t0)
        manifest.save(manifest_path(out))
        os.replace(tmp, out)
    except BaseException as exc:
        if writer is not None:
            writer.abort()
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):        # a full disk, a read-only or unwritable directory: the path and the fix
            raise os_error(out, exc, "nothing was written") from None
        raise
    return manifest


def _pool_manifest(opened: List[_Part], selections: List[np.ndarray], offsets: np.ndarray, labels: np.ndarray,
                   ids: np.ndarray, sizes: np.ndarray, stored: int, seed: int, balanced: bool, sha256: str,
                   elapsed: float) -> Manifest:
    sources, class_names = [], []
    for k, (o, sel) in enumerate(zip(opened, selections)):
        m = o.manifest
        class_names += [f"{m.dataset}:{n}" for n in m.class_names]
        sources.append(Source(
            source=k, dataset=m.dataset, split=m.split, path=str(o.part.path), sha256=m.sha256,
            num_samples=int(len(sel)), of=int(len(o.labels)), label_offset=int(offsets[k]), num_classes=m.num_classes,
            class_names=list(m.class_names),
            subset=(Subset(**subset_record(o.labels, o.part.n, seed, balanced, o.index)) if o.part.n is not None
                    else None),
            part_subset=m.subset, corruption=m.corruption, image=m.image, label_levels=sorted(m.label_levels),
        ))
    return Manifest(
        dataset="pool",
        split="+".join(f"{s.dataset}/{s.split}" for s in sources),
        num_samples=int(len(labels)),
        num_classes=int(offsets[-1]),
        class_names=class_names,
        counts_per_class=np.bincount(labels, minlength=int(offsets[-1])).tolist(),
        label_levels={},
        fields={"image": "RGBImageField", "label": "IntField", "source": "IntField", "index": "IntField"},
        reader_options={"parts": [o.part.spec for o in opened], "seed": seed, "balanced": balanced},
        image={"copied": "stored bytes of each part, not re-encoded (see sources[].image)"},
        ids=Ids("original id within its source (the 'index' field; pair it with 'source')", int(len(ids)),
                ids_digest(ids), ids.tolist() if len(ids) <= INLINE_IDS_MAX else None),
        sources=sources,
        subset=None,
        corruption=[c for s in sources for c in s.corruption or []],
        image_stats=_stored_stats(sizes, stored),
        skipped=[],
        sha256=sha256,
        write=WriteInfo(round(elapsed, 3), 0, round(len(labels) / max(elapsed, 1e-9), 1)),
    )


def _stored_stats(sizes: np.ndarray, stored: int) -> ImageStats:
    """A pool copies stored bytes: the parts' original image sizes are not known here."""
    return replace(_image_stats(sizes, stored), original_height=None, original_width=None)
