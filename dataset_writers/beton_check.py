"""``open_beton``: the one check every reader of a beton runs before compiled code touches its pages.

ffcv's ``Reader`` trusts the file: it maps whatever the header says, and its compiled loaders follow
every pointer in the metadata and the allocation table without bounds checks. A few flipped bytes there
(a bad disk, a copy cut short, a foreign file) then surface as a segmentation fault, a terabyte-sized
allocation or silently wrong images. This check reads only the metadata (header, field descriptors,
per-sample metadata rows, allocation table: a few dozen bytes per sample, never the images) and
refuses, with one line naming the file and the fix, anything the loaders could not read safely:

- the header: ffcv format version, field count and types, a power-of-two page size;
- the layout: metadata, pages and allocation table in order and inside the file (a truncated copy);
- the allocation table: every allocation inside the data region, inside one page, of a real sample;
- the metadata: every data pointer is an allocation of the table (what ffcv's reader looks up), image
  modes and sizes are possible (raw images fill their allocation exactly; with a manifest, no image is
  larger than the manifest's largest stored image).

A full content check (sha256 against the manifest) stays opt-in: ``ffcv-ssl inspect --verify``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional

import numpy as np

from ffcv_ssl.ffcv_compat import (ALLOC_TABLE_TYPE, CURRENT_VERSION, TYPE_ID_HANDLER, FieldDescType, HeaderType,
                                  decode_null_terminated_string, get_handlers, get_metadata_type)

from .errors import BetonError

if TYPE_CHECKING:
    from .manifest import Manifest

_MAX_FIELDS = 64                 # far above any beton we write (image, label, levels, source, index, extras)
_MIN_PAGE_SIZE = 1 << 12


def _count(mask: np.ndarray, one: str, many: str) -> str:
    n = int(mask.sum())
    return f"{n:,} {one if n == 1 else many}"


def _fail(path: Path, what: str, fix: str = "rewrite it with 'ffcv-ssl write'") -> BetonError:
    return BetonError(f"{path}: {what}; {fix}")


def check_beton_path(path: os.PathLike | str) -> Path:
    """The path of an existing beton file; a missing file or a directory is a one-line error."""
    path = Path(path)
    if path.is_dir():
        raise BetonError(f"{path} is a directory, not a .beton; give the path of the .beton file (e.g. "
                         f"{path}/NAME.beton)")
    if not path.exists():
        raise BetonError(f"{path} does not exist; give the path of a .beton written by 'ffcv-ssl write'")
    if not path.is_file():
        raise BetonError(f"{path} is not a regular file; give the path of a .beton written by 'ffcv-ssl write'")
    return path


def _read(path: Path, dtype: np.dtype, count: int, offset: int) -> np.ndarray:
    try:
        return np.fromfile(path, dtype=dtype, count=count, offset=offset)
    except PermissionError:
        raise BetonError(f"{path}: permission denied; make it readable (chmod a+r) or copy it "
                         "somewhere readable") from None


def open_beton(path: os.PathLike | str, manifest: Optional[Manifest] = None,
               expected_samples: Optional[int] = None):
    """Validate ``path`` (metadata only) and return ffcv's ``Reader`` of it.

    Args:
        manifest: the beton's manifest, when the caller has it: its ``num_samples`` must match the
            header and its ``image_stats`` bound the stored image sizes (a flipped size byte would
            otherwise make a loader allocate up to 65535 x 65535 pixels per image).
        expected_samples: the sample count the caller knows (the writer, right after writing).

    Raises:
        BetonError: one line naming the file, what is wrong and how to fix it.
    """
    from ffcv.reader import Reader

    path = check_beton_path(path)
    size = path.stat().st_size
    head = HeaderType.itemsize
    if size < head + FieldDescType.itemsize:
        raise _fail(path, f"{size:,} bytes, too small to be a .beton (truncated or not a beton)")
    header = _read(path, HeaderType, 1, 0)[0]
    if int(header["version"]) != CURRENT_VERSION:
        raise _fail(path, f"not an ffcv .beton of format version {CURRENT_VERSION} (its header says "
                          f"{int(header['version'])}: a foreign or damaged file)")
    num_fields, page_size = int(header["num_fields"]), int(header["page_size"])
    num_samples, table_ptr = int(header["num_samples"]), int(header["alloc_table_ptr"])
    if not 1 <= num_fields <= _MAX_FIELDS:
        raise _fail(path, f"header says {num_fields} fields (damaged header)")
    if page_size < _MIN_PAGE_SIZE or page_size & (page_size - 1):
        raise _fail(path, f"header says page size {page_size}, not a power of two >= {_MIN_PAGE_SIZE} (damaged header)")
    if table_ptr > size:
        raise _fail(path, f"truncated ({size:,} bytes, but its header places the allocation table at byte "
                          f"{table_ptr:,})")
    descriptors = _read(path, FieldDescType, num_fields, head)
    if len(descriptors) != num_fields:
        raise _fail(path, "truncated inside its field descriptors")
    for i, type_id in enumerate(descriptors["type_id"].tolist()):
        if TYPE_ID_HANDLER.get(int(type_id)) is None:
            raise _fail(path, f"field {i} has type id {int(type_id)}, which ffcv cannot read (damaged header "
                              "or a custom field)")
    try:
        handlers = dict(zip([decode_null_terminated_string(n) for n in descriptors["name"]],
                            get_handlers(descriptors)))
        metadata_type = get_metadata_type(list(handlers.values()))
    except Exception as exc:  # noqa: BLE001 - ffcv raises anything on garbage field arguments
        raise _fail(path, f"unreadable field descriptors ({type(exc).__name__}: {exc})") from None
    if len(handlers) != num_fields:
        raise _fail(path, "two fields share a name (damaged header)")
    metadata_start = head + descriptors.nbytes
    metadata_end = metadata_start + num_samples * metadata_type.itemsize
    if metadata_end > table_ptr:
        raise _fail(path, f"header says {num_samples:,} samples, whose metadata would end at byte "
                          f"{metadata_end:,}, past the allocation table at byte {table_ptr:,} (damaged header)")
    if (size - table_ptr) % ALLOC_TABLE_TYPE.itemsize:
        raise _fail(path, f"its allocation table ({size - table_ptr:,} bytes from byte {table_ptr:,} to the end) "
                          f"is not a whole number of {ALLOC_TABLE_TYPE.itemsize}-byte entries (truncated or "
                          "appended to)")
    if manifest is not None and manifest.num_samples != num_samples:
        raise _fail(path, f"header says {num_samples:,} samples, its manifest {manifest.num_samples:,} "
                          "(the beton or its manifest was replaced)")
    if expected_samples is not None and num_samples != int(expected_samples):
        raise _fail(path, f"header says {num_samples:,} samples, expected {int(expected_samples):,}")
    table = _read(path, ALLOC_TABLE_TYPE, -1, table_ptr)
    _check_table(path, table, num_samples, metadata_end, table_ptr, page_size)
    metadata = _read(path, metadata_type, num_samples, metadata_start)
    if len(metadata) != num_samples:
        raise _fail(path, "truncated inside its metadata")
    _check_metadata(path, metadata, handlers, table, manifest)
    try:
        return Reader(str(path))
    except Exception as exc:  # noqa: BLE001 - after the checks above this should not happen
        raise _fail(path, f"not a readable .beton ({type(exc).__name__}: {exc})") from None


def _check_table(path: Path, table: np.ndarray, num_samples: int, data_start: int, data_end: int,
                 page_size: int) -> None:
    """Every allocation inside [data_start, data_end), inside one page, of a sample that exists."""
    if num_samples and not len(table):
        raise _fail(path, f"{num_samples:,} samples but an empty allocation table (truncated)")
    ptr, sz, sid = (table[k].astype(np.uint64) for k in ("ptr", "size", "sample_id"))
    # compare sizes against the room left after each pointer: no uint64 overflow for any flipped value
    bad = (ptr < data_start) | (ptr > data_end) | (sz > np.uint64(data_end) - np.minimum(ptr, np.uint64(data_end)))
    bad |= sid >= np.uint64(num_samples)
    last = ptr + np.maximum(sz, np.uint64(1)) - np.uint64(1)
    bad |= (ptr // np.uint64(page_size)) != (last // np.uint64(page_size))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(path, f"{_count(bad, 'allocation table entry is', 'allocation table entries are')} impossible "
                          f"(first: entry {i}, sample "
                          f"{int(sid[i])}, {int(sz[i]):,} bytes at byte {int(ptr[i]):,}; data lies in bytes "
                          f"{data_start:,}..{data_end:,}): a damaged table")
    if len(np.unique(ptr)) != len(ptr):
        raise _fail(path, "its allocation table lists one address twice (a damaged table)")


def _check_metadata(path: Path, metadata: np.ndarray, handlers: Dict[str, Any], table: np.ndarray,
                    manifest: Optional[Manifest]) -> None:
    """Every data pointer is an allocation; image modes and sizes are possible."""
    from ffcv.fields import RGBImageField

    order = np.argsort(table["ptr"])
    ptrs, sizes = table["ptr"][order], table["size"][order]
    height = manifest.image_stats.stored_height if manifest is not None else None
    width = manifest.image_stats.stored_width if manifest is not None else None
    limits = {"height": height.max if height is not None else None, "width": width.max if width is not None else None}
    for k, (name, handler) in enumerate(handlers.items()):
        column = metadata[f"f{k}"]
        sub = column.dtype.names or ()
        key = "data_ptr" if "data_ptr" in sub else "ptr" if "ptr" in sub else None
        if key is None and column.dtype == np.dtype("<u8"):      # NDArrayField: the row is the pointer
            key = ""
        if key is None:
            continue
        pointers = column[key] if key else column
        at = np.minimum(np.searchsorted(ptrs, pointers), max(len(ptrs) - 1, 0))
        missing = (ptrs[at] != pointers) if len(ptrs) else np.ones(len(pointers), bool)
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise _fail(path, f"{_count(missing, 'sample points', 'samples point')} outside its allocation table "
                              f"(first: sample "
                              f"{i}, field '{name}'): damaged metadata")
        if isinstance(handler, RGBImageField):
            _check_images(path, name, column, sizes[at], limits)


def _check_images(path: Path, name: str, column: np.ndarray, alloc: np.ndarray, limits: Dict[str, Any]) -> None:
    mode, width, height = (column[k].astype(np.int64) for k in ("mode", "width", "height"))
    bad = (mode > 1) | (width < 1) | (height < 1)
    bad |= (mode == 1) & (alloc.astype(np.int64) != width * height * 3)        # raw: exactly the pixels
    # a JPEG spends at least 2 bits per 8x8 block of luma (DC + end of block), i.e. 1 byte per 256 px;
    # 16x margin. Catches a flipped size byte (65,000 x 65,000 px in 1 KB) even without a manifest.
    bad |= (mode == 0) & (width * height > alloc.astype(np.int64) * 4096)
    for dim, values in (("height", height), ("width", width)):
        if limits[dim] is not None:
            bad |= values > int(limits[dim])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        bound = (f"; its manifest's largest stored image is {limits['height']} x {limits['width']}"
                 if limits["height"] is not None else "")
        what = _count(bad, f"'{name}' entry is", f"'{name}' entries are")
        raise _fail(path, f"{what} impossible (first: sample {i}, mode "
                          f"{int(mode[i])}, {int(height[i])} x {int(width[i])} px, {int(alloc[i]):,} bytes{bound}): "
                          "damaged metadata")
