"""``write_split``: one split of a dataset (optionally a nested subset, optionally corrupted) to a beton.

A beton is written to a hidden temporary path, verified with ffcv's own reader, checksummed, and only
then renamed to its final name (its manifest first, the beton last). A kill at any moment therefore
leaves nothing under the final name, and "the beton exists" means "it is complete".
"""
from __future__ import annotations

import os
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np
from ffcv.fields import IntField, NDArrayField, RGBImageField

from ffcv_ssl.console import progress_bar
from ffcv_ssl.util import cpu_budget

from .beton import DEFAULT_PAGE_SIZE, EncodeJob, OrderedBetonFile, encode_in_order, sha256_file, verify_beton
from .errors import WriterError
from .manifest import (INLINE_IDS_MAX, Ids, ImageStats, LabelLevel, Manifest, Skipped, Source, Span, Subset,
                       WriteInfo, ids_digest, manifest_path)
from .output import claim_output, os_error, temp_path
from .records import SplitIndex

WRITE_MODES = ("jpg", "raw", "smart")


@dataclass
class ImageOptions:
    """How images are stored.

    The default (longer side <= 512 px, JPEG quality 90) stores ImageNet and iNat21 (<= 500 px) at their
    published resolution, so write-time corruptions keep their meaning against the clean beton (the resize
    control removes 375/256 = 1.46x, as in the paper, not 288/256 = 1.1x at 384 px) and RandomResizedCrop
    at 224 px upsamples a third of its crops instead of two thirds. Measured on real photos
    (``benchmarks/storage_caps.py``, table in docs/corruptions.md): 49 kB and 0.7 ms decode per image vs
    30 kB and 0.4 ms at 384, +6.5 dB PSNR of 224-px crops. Use 384 or 256 where disk or decode matter more.
    """

    max_resolution: int = 512
    write_mode: str = "jpg"
    jpeg_quality: int = 90
    smart_threshold: int = 256 * 256 * 3   # smart: JPEG when the raw image would exceed this many bytes
    page_size: int = DEFAULT_PAGE_SIZE

    def validate(self) -> None:
        if self.write_mode not in WRITE_MODES:
            raise WriterError(f"--write-mode {self.write_mode!r} is not one of {', '.join(WRITE_MODES)}")
        if not 1 <= self.jpeg_quality <= 100:
            raise WriterError(f"--jpeg-quality {self.jpeg_quality} must be between 1 and 100")
        if not 8 <= self.max_resolution <= 65535:
            raise WriterError(f"--max-resolution {self.max_resolution} must be between 8 and 65535")

    def field(self) -> RGBImageField:
        return RGBImageField(write_mode=self.write_mode, max_resolution=self.max_resolution,
                             jpeg_quality=self.jpeg_quality, smart_threshold=self.smart_threshold)


def resize_max_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink so the longer side is ``max_side`` (cv2 INTER_AREA, exactly as ffcv's writer would)."""
    h, w = image.shape[:2]
    ratio = max_side / max(h, w)
    if ratio >= 1:
        return image
    size = (np.array([w, h]) * ratio).astype(int)
    return cv2.resize(image, (int(size[0]), int(size[1])), interpolation=cv2.INTER_AREA)


@dataclass
class _SampleMaker:
    """Runs in writer workers: pixels of one position -> field values. Picklable, no lambdas."""

    index: SplitIndex
    max_resolution: int
    labels: np.ndarray
    source_id: int
    corrupt: Optional[Callable[[np.ndarray, int], np.ndarray]] = None

    def __call__(self, pos: int):
        # a corruption meets the full-resolution decoded source (no draft decode), as in the paper, BEFORE the
        # storage cap and the re-encode: otherwise the cap redefines it (docs/corruptions.md, "Where it runs")
        draft = None if self.corrupt is not None else self.max_resolution
        image = self.index.source.load(pos, draft_max_side=draft)
        original = image.shape[:2]
        sample_id = int(self.index.ids[pos])
        if self.corrupt is not None:
            image = self.corrupt(image, sample_id)
        image = np.ascontiguousarray(resize_max_side(image, self.max_resolution))
        values: List[Any] = [image, int(self.labels[pos])]
        values += [int(v[pos]) for v in self.index.levels.values()]
        values += [self.source_id, sample_id]
        extras = self.index.load_extra(pos)
        values += [np.ascontiguousarray(extras[k], dtype=spec.dtype).reshape(spec.shape)
                   for k, spec in self.index.extras.items()]
        return values, (original[0], original[1], image.shape[0], image.shape[1])

    def describe(self, pos: int) -> str:
        return self.index.source.describe(pos)


@dataclass
class Provenance:
    """How a split's samples were derived, beyond its reader: recorded in the manifest as written."""

    subset: Optional[Subset] = None                                       # a nested subset of the split
    corruption: List[Dict[str, Any]] = field(default_factory=list)      # ``CorruptionChain.manifest()``
    label_noise: Optional[Dict[str, Any]] = None                          # ``label_noise_record``


def beton_fields(index: SplitIndex, image: ImageOptions) -> Dict[str, Any]:
    """Storage layout: image, label, label levels (coarse to fine), source, index, extras."""
    fields: Dict[str, Any] = {"image": image.field(), "label": IntField()}
    for name in index.levels:
        fields[name] = IntField()
    fields["source"] = IntField()
    fields["index"] = IntField()
    for name, spec in index.extras.items():
        fields[name] = NDArrayField(np.dtype(spec.dtype), tuple(spec.shape))
    clash = [n for n in index.levels if n in ("image", "label", "source", "index")]
    if clash:
        raise WriterError(f"label level names {clash} clash with the beton's own fields")
    return fields


def default_workers() -> int:
    """One writer process per CPU this process may use (the affinity mask, not the host's count)."""
    return cpu_budget()


FAIL_LOOKAHEAD = 1000   # --on-error fail: images checked after the first bad one, to say how many more there are


def write_split(index: SplitIndex, out: Path, *, image: Optional[ImageOptions] = None,
                positions: Optional[Sequence[int]] = None, labels: Optional[np.ndarray] = None,
                corrupt: Optional[Callable[[np.ndarray, int], np.ndarray]] = None,
                workers: Optional[int] = None, on_error: str = "fail", overwrite: bool = False,
                provenance: Optional[Provenance] = None, description: str = "write") -> Manifest:
    """Write ``index`` (all of it, or ``positions``) to ``out`` and its manifest; returns the manifest.

    Args:
        labels: per-position labels to store instead of ``index.labels`` (label-noise corruption).
        corrupt: ``(image, sample_id) -> image``, applied before the beton's own resize and encoding.
        on_error: ``fail`` stops at the first unreadable image (nothing is left under ``out``);
            ``skip`` leaves it out and lists it in the manifest.
        provenance: the subset and corruptions that produced ``positions`` and ``labels``, for the manifest.
    """
    image = image or ImageOptions()
    image.validate()
    if on_error not in ("fail", "skip"):
        raise WriterError(f"--on-error {on_error!r} must be 'fail' or 'skip'")
    check_workers(workers)
    with claim_output(Path(out), overwrite) as out:        # exclusive for the whole write (output.py)
        return _write_split(index, out, image, positions, labels, corrupt, workers, on_error,
                            provenance or Provenance(), description)


def check_workers(workers: Optional[int]) -> None:
    if workers is not None and int(workers) < 0:
        raise WriterError(f"--workers {workers} must be >= 0 (0: one process per CPU)")


def _write_split(index: SplitIndex, out: Path, image: ImageOptions, positions: Optional[Sequence[int]],
                 labels: Optional[np.ndarray], corrupt: Optional[Callable[[np.ndarray, int], np.ndarray]],
                 workers: Optional[int], on_error: str, provenance: Provenance, description: str) -> Manifest:
    positions = np.arange(len(index)) if positions is None else np.asarray(positions, dtype=np.int64)
    if len(positions) == 0:
        raise WriterError(f"{index.dataset}/{index.split}: the split is empty; nothing to write "
                          "(check --root and --split)")
    if on_error == "fail" and index.skipped:
        first, more = index.skipped[0], len(index.skipped) - 1
        also = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise WriterError(f"{first['file']}: {first['reason']}{also}; nothing was written. Fix the dataset, "
                          "or pass --on-error skip to leave such entries out (they are listed in the manifest)")
    labels = index.labels if labels is None else np.asarray(labels, dtype=np.int64)
    workers = default_workers() if workers is None else int(workers)
    fields = beton_fields(index, image)
    maker = _SampleMaker(index, image.max_resolution, labels, 0, corrupt)
    job = EncodeJob(maker, maker.describe, fields)

    tmp = temp_path(out)
    writer: Optional[OrderedBetonFile] = None
    skipped = [Skipped(**s) for s in index.skipped]
    # compact per-sample records (16 B each), so the parent's memory does not grow with Python objects
    written_pos = np.empty(len(positions), dtype=np.int64)
    sizes = np.empty((len(positions), 4), dtype=np.int32)
    num_written = 0
    stored_bytes = 0
    t0 = time.perf_counter()
    first_error: Optional[tuple] = None      # --on-error fail: (file, reason), then count the next few bad ones
    more_bad = checked_after = 0
    try:
        writer = OrderedBetonFile(tmp, fields, len(positions), image.page_size)
        with ExitStack() as stack:
            bar = stack.enter_context(progress_bar("rate"))
            task = bar.add_task(description, total=len(positions), rate="")
            # closing(): a failure shuts the worker pool down now, not whenever the generator is collected
            # (at interpreter exit, joining its threads could hang)
            results = stack.enter_context(closing(encode_in_order(job, positions, workers)))
            for done, (status, pos, *rest) in enumerate(results, 1):
                if first_error is not None:
                    checked_after += 1
                    more_bad += status != "ok"
                    if checked_after >= FAIL_LOOKAHEAD:
                        break
                    continue
                if status == "ok":
                    row, buffers, info = rest
                    writer.add(row, buffers, maker.describe(pos))
                    written_pos[num_written] = pos
                    sizes[num_written] = info
                    num_written += 1
                    stored_bytes += sum(b.nbytes for b in buffers)
                else:
                    path, reason, _ = rest
                    if on_error == "fail":
                        first_error = (path, reason)
                        continue
                    skipped.append(Skipped(path, reason))
                if done % 64 == 0 or done == len(positions):
                    bar.update(task, completed=done, rate=f"{done / (time.perf_counter() - t0):,.0f} img/s")
        if first_error is not None:
            also = (f" (and {more_bad} more unreadable image{'s' if more_bad > 1 else ''} among the {checked_after:,} "
                    "checked after it)" if more_bad else "")
            raise WriterError(f"{first_error[0]}: {first_error[1]}{also}; nothing was written. Fix or remove the "
                              "file, or pass --on-error skip to leave such images out (they are listed in the "
                              "manifest)")
        writer.close()
        if not num_written:
            raise WriterError(f"{index.dataset}/{index.split}: every image was unreadable; nothing was written")
        verify_beton(tmp, num_written)
        elapsed = time.perf_counter() - t0
        written = written_pos[:num_written]
        manifest = _manifest(index, written, labels, fields, image, skipped, sizes[:num_written], stored_bytes,
                             sha256_file(tmp), elapsed, workers, provenance)
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


def write_dataset(dataset: str, root: Optional[os.PathLike | str], split: str, out: os.PathLike | str, *,
                  options: Any = (), image: Optional[ImageOptions] = None, subset: Optional[int] = None,
                  seed: int = 0, balanced: bool = False, workers: Optional[int] = None, on_error: str = "fail",
                  overwrite: bool = False, corruptions: Sequence[str] = (),
                  corrupt_seed: Optional[int] = None) -> Manifest:
    """Reader -> optional nested subset -> ``write_split``: what ``ffcv-ssl write DATASET`` runs.

    Every check that needs no pixels (output path, split name, reader options, storage options, the
    whole index with its per-entry problems) happens before the first image is read.

    Args:
        options: the reader's options dataclass, or ``KEY=VALUE`` strings parsed into it.
        subset: keep the nested subset of this many samples (``dataset_writers.subsets``), chosen by
            ``seed`` and ``balanced``; recorded in the manifest so it can be regenerated.
        corruptions: ``NAME:k=v`` specs or presets (``dataset_writers.corruptions``), applied in order to
            every image (and, for ``label_noise``, to the labels), keyed by ``corrupt_seed`` (default
            ``seed``) and the sample id; recorded in the manifest.
    """
    from ffcv_ssl.config import load_config

    from .corruptions import CorruptionChain
    from .registry import get_reader

    chain = CorruptionChain.build(list(corruptions), seed if corrupt_seed is None else corrupt_seed)
    spec = get_reader(dataset)
    if split not in spec.splits:
        raise WriterError(f"{dataset} has no split '{split}'; choose --split from {', '.join(spec.splits)}")
    opts = options if isinstance(options, spec.options) else load_config(spec.options, None, list(options))
    image = image or ImageOptions()
    image.validate()
    if on_error not in ("fail", "skip"):
        raise WriterError(f"--on-error {on_error!r} must be 'fail' or 'skip'")
    check_workers(workers)
    with claim_output(Path(out), overwrite) as out:     # held from the index to the rename (output.py)
        return _write_dataset(spec, dataset, root, split, out, opts, chain, image, subset, seed, balanced, workers,
                              on_error, overwrite)


def _write_dataset(spec: Any, dataset: str, root: Optional[os.PathLike | str], split: str, out: Path, opts: Any,
                   chain: Any, image: ImageOptions, subset: Optional[int], seed: int, balanced: bool,
                   workers: Optional[int], on_error: str, overwrite: bool) -> Manifest:
    from .corruptions import label_noise_record
    from .subsets import nested_subset, subset_record

    index = spec.read(Path(root).expanduser() if root else None, split, opts)
    positions = None
    provenance = Provenance(corruption=chain.manifest())
    if subset is not None:
        positions = nested_subset(index.labels, subset, seed, balanced)
        provenance.subset = Subset(**subset_record(index.labels, subset, seed, balanced, index.ids))
    labels = None
    if chain.has_labels:
        labels, _ = chain.noisy_labels(index.labels, index.ids, len(index.class_names))
        kept = positions if positions is not None else np.arange(len(index))
        provenance.label_noise = label_noise_record(index.ids[kept], index.labels[kept], labels[kept])
    return write_split(index, out, image=image, positions=positions, labels=labels,
                       corrupt=chain if chain.has_pixels else None, workers=workers, on_error=on_error,
                       overwrite=overwrite, provenance=provenance, description=f"{dataset}/{split}")


def _manifest(index: SplitIndex, written: np.ndarray, labels: np.ndarray, fields: Dict[str, Any],
              image: ImageOptions, skipped: List[Skipped], sizes: np.ndarray, stored_bytes: int,
              sha256: str, elapsed: float, workers: int, provenance: Provenance) -> Manifest:
    ids = index.ids[written]
    lab = labels[written]
    counts = np.bincount(lab, minlength=len(index.class_names))
    levels = {}
    for name, values in index.levels.items():
        names = index.level_names.get(name, [])
        # parent of each fine class at this level, so evaluation can map predictions up the hierarchy
        parent = np.full(len(index.class_names), -1, dtype=np.int64)
        parent[index.labels] = values
        levels[name] = LabelLevel(names, np.bincount(values[written], minlength=len(names)).tolist(), parent.tolist())
    return Manifest(
        dataset=index.dataset,
        split=index.split,
        num_samples=int(len(written)),
        num_classes=len(index.class_names),
        class_names=list(index.class_names),
        counts_per_class=counts.tolist(),
        label_levels=levels,
        fields={name: type(f).__name__ for name, f in fields.items()},
        reader_options=index.options,
        image={"max_resolution": image.max_resolution, "write_mode": image.write_mode,
               "jpeg_quality": image.jpeg_quality, "page_size": image.page_size},
        ids=Ids(index.id_kind, int(len(ids)), ids_digest(ids), ids.tolist() if len(ids) <= INLINE_IDS_MAX else None),
        sources=[Source(source=0, dataset=index.dataset, split=index.split, label_offset=0,
                        num_classes=len(index.class_names))],
        subset=provenance.subset,
        corruption=provenance.corruption,
        image_stats=_image_stats(sizes, stored_bytes),
        skipped=skipped,
        sha256=sha256,
        write=WriteInfo(round(elapsed, 3), workers, round(len(written) / max(elapsed, 1e-9), 1)),
        label_noise=provenance.label_noise,
    )


def _image_stats(sizes: np.ndarray, stored_bytes: int) -> ImageStats:
    if not len(sizes):
        return ImageStats()

    def span(values: np.ndarray) -> Span:
        return Span(int(values.min()), round(float(values.mean()), 1), int(values.max()))

    oh, ow, sh, sw = sizes.T
    return ImageStats(original_height=span(oh), original_width=span(ow), stored_height=span(sh),
                      stored_width=span(sw), max_stored_area=int((sh * sw).max()), stored_bytes=int(stored_bytes),
                      mean_stored_bytes=round(stored_bytes / len(sizes), 1))
