"""The ffcv 1.0.2 workarounds and the ffcv internals our writer and loader rely on, checked against the installed ffcv.

ffcv's public API (``Loader``, ``PipelineSpec``, ``Operation``, the fields, ``Reader``) is used where it is needed.
What lives here is what a new ffcv release may silently break, because it reaches past that API:

- the import hook that turns numba's on-disk cache on for the typed dict ffcv builds at import;
- the libjpeg-turbo ``imdecode`` symbol registered with LLVM under its 1.0.2 C signature;
- the ``.beton`` format: header, field descriptors, allocation table, page sizes, ``Field.encode``'s malloc;
- the loader patches: an ``EpochIterator`` that reports its thread's exception, an ``OSCacheManager`` that does
  not make numba's interned ``uint8[::1]`` type read-only.

Each is written for ``FFCV_VERSION`` and calls ``check_ffcv_version()`` when it first touches ffcv, so another
ffcv fails with one line that says what to install, instead of a hang, a segfault or a wrong beton.
``tests/test_ffcv_compat.py`` checks the shape of every internal used here against the installed ffcv.

Importing this module imports neither ffcv, numba, torch nor numpy (``import ffcv_ssl`` installs the hook and must
stay fast); they are imported inside the functions below, and the beton names on first use (PEP 562 ``__getattr__``).
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.abc
import sys
import threading
from typing import TYPE_CHECKING, Any, Optional

from .errors import UserError

if TYPE_CHECKING:     # for static checkers: the beton names that __getattr__ below provides lazily
    from ffcv.fields.base import Field
    from ffcv.types import (ALLOC_TABLE_TYPE, CURRENT_VERSION, TYPE_ID_HANDLER, FieldDescType, HeaderType,
                            get_handlers, get_metadata_type)
    from ffcv.utils import decode_null_terminated_string

FFCV_VERSION = "1.0.2"          # the ffcv release every workaround in this module is written for


def installed_ffcv_version() -> Optional[str]:
    """The installed ffcv's version from its package metadata, or None when ffcv is not installed.

    Not ``ffcv.__version__``: PyPI's 1.0.2 reports a stale ``'0.0.3rc1'`` there, and importing ffcv costs seconds.
    """
    from importlib import metadata

    try:
        return metadata.version("ffcv")
    except metadata.PackageNotFoundError:
        return None


def check_ffcv_version() -> None:
    """Raise ``UserError`` unless the installed ffcv is ``FFCV_VERSION``, the one these workarounds are for."""
    installed = installed_ffcv_version()
    if installed != FFCV_VERSION:
        what = f"ffcv {installed} is installed" if installed else "ffcv is not installed"
        raise UserError(f"{what}, but ffcv-ssl's ffcv workarounds (ffcv_ssl/ffcv_compat.py) are written for ffcv "
                        f"{FFCV_VERSION}; run 'pip install ffcv=={FFCV_VERSION}'")


# ---------------------------------------------------------------------------------------------------- import hook
# Make ``import ffcv`` 4-5 s cheaper in every process, without touching ffcv.
#
# ffcv 1.0.2's ``ffcv/fields/rgb_image.py`` builds a numba typed ``Dict`` at import time. numba compiles the
# typed-dict methods with caching off, so every process that imports ffcv (each CLI call, each submitit or
# SLURM job, each DDP rank) spends ~4.8 s of CPU compiling the same two functions: on the 2-core demo that
# was a fifth of its run time. numba's public ``Dispatcher.enable_caching()`` turns its on-disk cache on for
# those dispatchers, so the compile happens once per machine and later processes load it in ~0.4 s.
#
# ``install_import_hook()`` adds a meta-path finder that does this just before ``ffcv.fields.rgb_image`` is first
# imported, so importing ``ffcv_ssl`` itself stays free of numba (``ffcv-ssl --help`` stays fast). It is also the
# first moment ffcv is imported, so the version check runs there. Caching is an optimisation only: when no cache
# directory is writable numba refuses, and we silently keep the uncached (slow but correct) behaviour. The cache
# is invalidated by numba itself when its sources change.

TRIGGER = "ffcv.fields.rgb_image"


def enable_typed_dict_cache() -> int:
    """Turn numba's on-disk cache on for the typed-dict dispatchers; returns how many were switched."""
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher
    from numba.typed import typeddict

    switched = 0
    for obj in vars(typeddict).values():
        if isinstance(obj, CPUDispatcher) and isinstance(obj._cache, NullCache):
            try:
                obj.enable_caching()
            except RuntimeError:        # no writable cache locator for numba's sources: stay uncached
                return switched
            switched += 1
    return switched


class _BeforeRgbImage(importlib.abc.MetaPathFinder):
    """Fires once, when ``ffcv.fields.rgb_image`` is about to be imported; never finds anything itself."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == TRIGGER:
            uninstall_import_hook()
            check_ffcv_version()
            enable_typed_dict_cache()
        return None


_FINDER = _BeforeRgbImage()


def install_import_hook() -> None:
    if TRIGGER not in sys.modules and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall_import_hook() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


# ---------------------------------------------------------------------------------------------------- imdecode
IMDECODE_SYMBOL = "ffcv_ssl_imdecode"


@functools.cache
def register_imdecode():
    """ffcv's libjpeg-turbo ``imdecode`` as a numba ``ExternalFunction``, callable from *cached* kernels.

    numba refuses to cache a function that calls a ctypes function (a "dynamic global"), and a parallel
    kernel that must be recompiled costs ~10 s per loader. Registering the C symbol with LLVM under a fixed
    name and declaring it as an ``ExternalFunction`` makes the call a plain symbol reference, so the whole
    decode-and-augment kernel is compiled once and loaded from numba's cache afterwards. The declared
    signature is ffcv 1.0.2's ``imdecode`` (``ffcv/libffcv.py``); numba cannot check it against the C code.
    Registered once per process.
    """
    check_ffcv_version()
    import ctypes

    import llvmlite.binding as llvm
    from ffcv.libffcv import ctypes_imdecode
    from numba import types

    llvm.add_symbol(IMDECODE_SYMBOL, ctypes.cast(ctypes_imdecode, ctypes.c_void_p).value)
    # int imdecode(uint8 *src, uint64 size, uint32 src_h, uint32 src_w, uint8 *dst, uint32 crop_h, uint32 crop_w,
    #              uint32 off_x, uint32 off_y, uint32 scale_num, uint32 scale_denom, bool crop, bool hflip)
    return types.ExternalFunction(IMDECODE_SYMBOL, types.int32(
        types.voidptr, types.uint64, types.uint32, types.uint32, types.voidptr, types.uint32, types.uint32,
        types.uint32, types.uint32, types.uint32, types.uint32, types.boolean, types.boolean))


# ---------------------------------------------------------------------------------------------------- .beton format
# ffcv 1.0.2's file layout (``ffcv/types.py``, ``ffcv/writer.py``): a ``HeaderType`` row, one ``FieldDescType``
# row per field (type id from ``TYPE_ID_HANDLER``, a 16-byte name, 1024 bytes of arguments), the metadata rows
# (``get_metadata_type(fields)``), the data pages, and the ``ALLOC_TABLE_TYPE`` table (sample id, pointer, size)
# at ``header.alloc_table_ptr``. No allocation may cross a page boundary: the reader maps ``ptr >> log2(page)``
# to a page. ``Field.encode(destination, value, malloc)`` writes a field's metadata row into ``destination`` and
# asks ``malloc(size)`` for its data; ``malloc`` returns ``(pointer, uint8 buffer)``: the field fills the buffer
# and stores the pointer (a ``<u8``) in its metadata.

MIN_PAGE_SIZE = 1 << 21             # ffcv.writer.MIN_PAGE_SIZE
DEFAULT_PAGE_SIZE = 4 * MIN_PAGE_SIZE   # ffcv.DatasetWriter's default page size

# name -> the ffcv 1.0.2 module that defines it; imported (after the version check) on first access
_BETON_NAMES = {
    "ALLOC_TABLE_TYPE": "ffcv.types", "CURRENT_VERSION": "ffcv.types", "TYPE_ID_HANDLER": "ffcv.types",
    "FieldDescType": "ffcv.types", "HeaderType": "ffcv.types", "get_handlers": "ffcv.types",
    "get_metadata_type": "ffcv.types", "decode_null_terminated_string": "ffcv.utils", "Field": "ffcv.fields.base",
    "IMAGE_MODES": "ffcv.fields.rgb_image",
}


def __getattr__(name: str) -> Any:
    """The beton-format names of ``_BETON_NAMES`` on first use (PEP 562), so importing this module skips ffcv."""
    module = _BETON_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    check_ffcv_version()
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value         # later look-ups skip this function
    return value


# ---------------------------------------------------------------------------------------------------- loader patches
def safe_epoch_iterator():
    """ffcv's ``EpochIterator``, except that an exception in its thread reaches the consumer.

    Upstream (1.0.2), a failing batch kills the worker thread silently and ``next()`` then waits forever on its
    queue; here the exception is queued and re-raised in the training loop.
    """
    check_ffcv_version()
    from ffcv.loader.epoch_iterator import EpochIterator

    class SafeEpochIterator(EpochIterator):
        error: Optional[BaseException] = None

        def run(self):
            try:
                super().run()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer thread
                self.error = exc
                while not self.terminate_event.is_set():
                    try:
                        self.output_queue.put(None, timeout=0.5)
                        break
                    except Exception:  # noqa: BLE001 - queue full: the consumer is slow; retry
                        continue

        def __next__(self):
            try:
                return super().__next__()
            except StopIteration:
                if self.error is not None:     # set before the end marker was queued
                    raise RuntimeError(f"the loader thread failed: {type(self.error).__name__}: "
                                       f"{self.error}") from self.error
                raise

    return SafeEpochIterator


_OS_CACHE_LOCK = threading.Lock()


@contextlib.contextmanager
def safe_os_cache():
    """Build an ffcv ``Loader`` whose memory manager does not corrupt numba's type cache.

    ffcv 1.0.2's ``OSCacheManager.state_type`` does ``t = nb.uint8[::1]; t.mutable = False``: it flips the
    *interned* ``array(uint8, 1d, C)`` type to read-only for the whole process. Every later compilation
    that meets a cached typing of a uint8 vector (``np.empty(n, np.uint8)``, a row of an image) then fails
    with "Cannot modify readonly array"; the first Loader of a process compiles before the damage
    matters, the second (train + val, or a bench) died in its worker thread and hung its consumer.
    This swaps in, while one Loader is built, a manager with the same reader but a fresh read-only type.
    """
    check_ffcv_version()
    import numba as nb
    import numpy as np
    from ffcv.loader import loader as ffcv_loader
    from ffcv.memory_managers.os_cache import OSCacheManager
    from ffcv.pipeline.compiler import Compiler

    def os_cache_read(address, mem_state):
        """ffcv's OS-cache read (the sample's bytes at ``address``), on the read-only mapping."""
        size = mem_state[2][np.searchsorted(mem_state[1], address)]
        return mem_state[0][address:address + size]

    class SafeOSCacheManager(OSCacheManager):
        @property
        def state_type(self):
            return nb.types.Tuple([nb.types.Array(nb.uint8, 1, "C", readonly=True), nb.uint64[::1], nb.uint64[::1]])

        def compile_reader(self):
            ret = nb.types.Array(nb.uint8, 1, "C", readonly=True)
            signature = ret(nb.uint64, self.state_type)
            if not Compiler.is_enabled:
                return os_cache_read
            # cached (ffcv's options otherwise): compiled per loader it took ~1.4 s. numba caches this closure
            # by name and source; its one free variable is the numpy module, the same in every call
            return nb.njit(signature, cache=True, fastmath=True, nogil=True, error_model="numpy")(os_cache_read)

    with _OS_CACHE_LOCK:
        original = ffcv_loader.OSCacheManager
        ffcv_loader.OSCacheManager = SafeOSCacheManager
        try:
            yield
        finally:
            ffcv_loader.OSCacheManager = original
