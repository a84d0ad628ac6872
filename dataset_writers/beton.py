"""A deterministic, fail-fast ``.beton`` writer built from ffcv's own file format and field encoders.

Why not ``ffcv.DatasetWriter`` directly: its worker processes book pages from a shared counter, so the
layout (and the sha256) of a beton depends on scheduling; a worker exception hangs the parent forever
(its progress loop waits for every sample and is never told the worker died); and its sample count is fixed
before the first image is read, so an unreadable image cannot be skipped. Here workers only *encode* (decode,
corrupt, resize, JPEG) with ffcv's ``Field.encode`` into private buffers; the parent places the encoded samples
into pages in sample order. Same format (ffcv's ``Reader``/``Loader`` read it unchanged), same per-image work, but
byte-identical output for any worker count, prompt failure, and skips.
"""
from __future__ import annotations

import os
from collections import deque
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence, Tuple

import multiprocessing as mp
import numpy as np

from ffcv_ssl.ffcv_compat import (ALLOC_TABLE_TYPE, CURRENT_VERSION, DEFAULT_PAGE_SIZE, MIN_PAGE_SIZE, TYPE_ID_HANDLER,
                                  Field, FieldDescType, HeaderType, get_metadata_type)
from ffcv_ssl.util import file_sha256

from .beton_check import open_beton
from .errors import ImageError, WriterError

_SENTINEL = np.uint64(1 << 62)        # placeholder pointers handed out while encoding in a worker
_ROWS_PER_CHUNK = 8192                # metadata rows buffered before they are written to the file


def _align(ptr: int, page_size: int) -> int:
    return -(-ptr // page_size) * page_size


class _CaptureMalloc:
    """Stands in for ffcv's page allocator inside a worker: hands out private buffers and fake pointers.

    ``Field.encode`` calls it as ffcv 1.0.2's ``malloc`` (see ``ffcv_compat``): ``(pointer, buffer)`` per request.
    """

    def __init__(self) -> None:
        self.buffers: List[np.ndarray] = []

    def __call__(self, size: int) -> Tuple[int, np.ndarray]:
        buf = np.empty(int(size), dtype="<u1")
        self.buffers.append(buf)
        return int(_SENTINEL) + len(self.buffers) - 1, buf


def encode_sample(fields: Sequence[Field], metadata_type: np.dtype, values: Sequence[Any]) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Encode one sample with ffcv's field encoders: its metadata row and the data buffers it allocated."""
    row = np.zeros(1, dtype=metadata_type)
    malloc = _CaptureMalloc()
    for name, field, value in zip(metadata_type.names, fields, values):
        field.encode(row[name][0:1], value, malloc)
    return row, malloc.buffers


def _patch_pointers(row: np.ndarray, ptrs: Sequence[int]) -> None:
    """Replace the fake pointers a worker wrote into ``row`` by the real file offsets."""
    for name in row.dtype.names:
        sub = row[name]
        subnames = sub.dtype.names or (None,)
        for s in subnames:
            view = sub[s] if s is not None else sub
            if view.dtype == np.dtype("<u8") and view[0] >= _SENTINEL:
                view[0] = ptrs[int(view[0] - _SENTINEL)]


class OrderedBetonFile:
    """Sequential page writer for one beton: ``add`` samples in order, then ``close``.

    Args:
        path: where to write (callers pass a temporary path and rename it when complete).
        fields: ffcv fields, in storage order.
        capacity: the most samples that will be added (space for their metadata is reserved up front).
        page_size: ffcv page size; a sample never straddles two pages.
    """

    def __init__(self, path: Path, fields: Mapping[str, Field], capacity: int, page_size: int = DEFAULT_PAGE_SIZE):
        if page_size < MIN_PAGE_SIZE or page_size & (page_size - 1):
            raise WriterError(f"page_size={page_size} must be a power of two >= {MIN_PAGE_SIZE}")
        self.path, self.fields, self.page_size = Path(path), dict(fields), int(page_size)
        self.metadata_type = get_metadata_type(list(self.fields.values()))
        self.capacity = max(int(capacity), 0)
        # Metadata rows are written to their reserved region in chunks and the allocation table is a
        # compact numpy array, so the writer's memory stays flat instead of growing ~400 B per sample.
        self.rows = np.zeros(min(self.capacity, _ROWS_PER_CHUNK) or 1, dtype=self.metadata_type)
        self.rows_start = 0
        self.allocations = np.zeros(1024, dtype=ALLOC_TABLE_TYPE)
        self.num_allocations = 0
        self.count = 0
        self.fp = open(self.path, "wb")
        descriptors = np.zeros(len(self.fields), dtype=FieldDescType)
        type_ids = {v: k for k, v in TYPE_ID_HANDLER.items()}
        for i, (name, field) in enumerate(self.fields.items()):
            encoded = np.frombuffer(name.encode("ascii"), dtype="<u1")
            if len(encoded) > descriptors[0]["name"].shape[0]:
                raise WriterError(f"field name '{name}' is longer than ffcv's 16-byte limit")
            descriptors[i]["type_id"] = type_ids.get(type(field), 255)
            descriptors[i]["name"][: len(encoded)] = encoded
            descriptors[i]["arguments"][:] = field.to_binary()[0]
        self.fp.write(np.zeros(1, dtype=HeaderType).tobytes())
        self.fp.write(descriptors.tobytes())
        self.metadata_start = HeaderType.itemsize + descriptors.nbytes
        # Data starts right after the metadata, not at the next page boundary, and the last page ends at its
        # last byte: ffcv only needs that no allocation crosses a page boundary (it maps ``ptr >> log2(page)``
        # to a page). Padding both ends made every beton >= 2 pages (16 MiB) even for 15 images.
        self.data_start = self.metadata_start + self.capacity * self.metadata_type.itemsize
        self.page = np.zeros(self.page_size, dtype="<u1")
        # the current page buffer covers file bytes [page_start, page_start + page_cap); the first is partial
        self.page_start = self.data_start
        self.page_cap = _align(self.data_start, self.page_size) - self.data_start
        self.page_used = 0

    def add(self, row: np.ndarray, buffers: Sequence[np.ndarray], what: str = "") -> int:
        """Place one encoded sample (from ``encode_sample``); returns its sample id."""
        total = int(sum(b.nbytes for b in buffers))
        if total > self.page_size:
            raise WriterError(f"{what or 'a sample'} needs {total} bytes, more than the page size "
                              f"{self.page_size}; lower --max-resolution or raise --page-size")
        if self.count >= self.capacity:
            raise WriterError("more samples than the capacity reserved for this beton")
        if self.page_used + total > self.page_cap:
            self._flush()
            self.page_start += self.page_cap
            self.page_cap = self.page_size
            self.page_used = 0
        ptrs = []
        for buf in buffers:
            ptr = self.page_start + self.page_used
            self.page[self.page_used: self.page_used + buf.nbytes] = buf
            self.page_used += buf.nbytes
            self._allocate(self.count, ptr, buf.nbytes)
            ptrs.append(ptr)
        _patch_pointers(row, ptrs)
        if self.count - self.rows_start == len(self.rows):
            self._flush_rows()
        self.rows[self.count - self.rows_start] = row[0]
        self.count += 1
        return self.count - 1

    def _allocate(self, sample: int, ptr: int, size: int) -> None:
        if self.num_allocations == len(self.allocations):
            grown = np.zeros(2 * len(self.allocations), dtype=ALLOC_TABLE_TYPE)
            grown[: self.num_allocations] = self.allocations
            self.allocations = grown
        self.allocations[self.num_allocations] = (sample, ptr, size)
        self.num_allocations += 1

    def _flush_rows(self) -> None:
        """Write the buffered metadata rows to their place in the reserved metadata region."""
        n = self.count - self.rows_start
        if n:
            self.fp.seek(self.metadata_start + self.rows_start * self.metadata_type.itemsize)
            self.fp.write(self.rows[:n].tobytes())
        self.rows_start = self.count

    def _flush(self) -> None:
        """Write the used part of the current page (the rest stays a hole: zeros, not stored on most file systems)."""
        if not self.page_used:
            return
        self.fp.seek(self.page_start)
        self.fp.write(self.page[: self.page_used].tobytes())

    def close(self) -> None:
        """Write the last page, the allocation table, the metadata and the header."""
        self._flush()
        end = self.page_start + self.page_used
        self.fp.seek(end)
        self.fp.write(self.allocations[: self.num_allocations].tobytes())
        self._flush_rows()
        header = np.zeros(1, dtype=HeaderType)
        header[0]["version"] = CURRENT_VERSION
        header[0]["num_fields"] = len(self.fields)
        header[0]["page_size"] = self.page_size
        header[0]["num_samples"] = self.count
        header[0]["alloc_table_ptr"] = end
        self.fp.seek(0)
        self.fp.write(header.tobytes())
        self.fp.close()

    def abort(self) -> None:
        """Close without finishing; never raises (a full disk fails the buffered flush of ``close`` too)."""
        if not self.fp.closed:
            try:
                self.fp.close()
            except OSError:
                pass


# ----------------------------------------------------------------------------------------------------
# Parallel encoding, results consumed in order.

@dataclass
class EncodeJob:
    """What a worker needs: how to make the field values of a position, and the fields that encode them.

    ``make_values(pos)`` returns ``(values, info)``: the field values in storage order and a small tuple
    of statistics (e.g. the original image size) that travels back to the parent for the manifest.
    """

    make_values: Callable[[int], Tuple[Sequence[Any], tuple]]
    describe: Callable[[int], str]
    fields: Mapping[str, Field]

    def __post_init__(self) -> None:
        self._fields = list(self.fields.values())
        self._metadata_type = get_metadata_type(self._fields)

    def encode(self, pos: int):
        try:
            values, info = self.make_values(pos)
            row, buffers = encode_sample(self._fields, self._metadata_type, values)
            return ("ok", pos, row, buffers, info)
        except ImageError as exc:
            return ("error", pos, exc.path, exc.reason, None)
        except Exception as exc:  # noqa: BLE001 - reported with the file name, never swallowed
            return ("error", pos, self.describe(pos), f"{type(exc).__name__}: {exc}", None)


_JOB: Optional[EncodeJob] = None


def _die_with_parent(parent: int) -> None:
    """Make this worker die when the writer dies, whatever kills it (kill -9, OOM killer, SLURM).

    A worker blocked on the task queue would otherwise live on forever as an orphan: the queue's pipe
    stays open in its siblings, so it never sees end-of-file. Linux delivers SIGKILL to the worker when
    the thread that forked it exits (``PR_SET_PDEATHSIG``; workers are forked by the thread that submits
    the first chunk, which lives as long as the write). If the parent died before this call, exit now.
    """
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)     # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux: the stall timeout still ends the write
        pass
    if os.getppid() != parent:
        os._exit(1)
    # the parent handles SIGINT / SIGTERM (stops, cleans up, says so); a worker just finishes its chunk or dies
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _init_worker(job: EncodeJob, parent: int) -> None:
    global _JOB
    _die_with_parent(parent)
    _JOB = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # cv2's thread count is set to 1 by the parent before forking (``_single_threaded_cv2``): calling
    # cv2.setNumThreads here, in a forked child, deadlocks when the parent's cv2 pool was busy (e.g.
    # after an ffcv Loader ran in the same process).


@contextmanager
def _single_threaded_cv2() -> Iterator[None]:
    """One cv2 thread while workers are forked and run (one process per core already), restored after."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - ffcv needs cv2
        yield
        return
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def _encode_chunk(positions: Sequence[int]):
    assert _JOB is not None
    return [_JOB.encode(p) for p in positions]


def encode_in_order(job: EncodeJob, positions: Sequence[int], workers: int, chunk: int = 32,
                    stall_timeout: float = 600.0) -> Iterator[tuple]:
    """Yield ``job.encode(p)`` for every position, in order, using ``workers`` processes (0: inline).

    At most ``4 * workers`` chunks are in flight, so memory does not grow with the dataset. A worker
    that dies (killed, segfault) raises ``WriterError`` at once, and one that makes no progress for
    ``stall_timeout`` seconds (a deadlock) raises too, instead of hanging the write forever.
    """
    if workers <= 0:
        for p in positions:
            yield job.encode(int(p))
        return
    ctx = mp.get_context("fork")
    chunks = [positions[i: i + chunk] for i in range(0, len(positions), chunk)]
    with _single_threaded_cv2(), ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                                     initargs=(job, os.getpid())) as pool:
        pending: deque = deque()
        next_chunk = 0
        stalled = False
        try:
            while next_chunk < len(chunks) or pending:
                while next_chunk < len(chunks) and len(pending) < 4 * workers:
                    pending.append(pool.submit(_encode_chunk, [int(p) for p in chunks[next_chunk]]))
                    next_chunk += 1
                try:
                    results = pending.popleft().result(timeout=stall_timeout)
                except FuturesTimeout:
                    stalled = True
                    _terminate(pool)
                    raise WriterError(f"the writer workers made no progress for {stall_timeout:.0f} s (a deadlocked "
                                      "or stuck worker); nothing was written; retry, or use --workers 0 to encode "
                                      "in this process") from None
                for result in results:
                    yield result
        except BrokenProcessPool:
            raise WriterError("a writer worker process died (out of memory or killed?); nothing was written; "
                              "retry with fewer --workers") from None
        finally:
            # stopped early (a failed image, an exception in the consumer): drop the queued chunks; leaving
            # the ``with`` waits only for the chunks already running. After a stall the pool is broken and
            # its manager fails the queued futures itself (cancelling them too trips CPython 3.11).
            if not stalled:
                for f in pending:
                    f.cancel()


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Kill the workers of a stalled pool (no public API for this before Python 3.14)."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        if proc.is_alive():
            proc.terminate()


sha256_file = file_sha256      # the writers' name for the one implementation (manifests, pool parts, inspect)


def verify_beton(path: Path, expected_samples: Optional[int] = None) -> int:
    """Re-open ``path`` with the readers' own validation (``beton_check.open_beton``); returns the count."""
    return int(open_beton(path, expected_samples=expected_samples).num_samples)
