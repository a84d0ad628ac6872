"""ffcv_compat: the ffcv 1.0.2 workarounds fail with one line on another ffcv, and every ffcv internal they use
still has the shape they were written for, so an ffcv upgrade fails here, in CI, not in a run."""
from __future__ import annotations

import ctypes
import importlib.util
import inspect
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from ffcv_ssl import ffcv_compat
from ffcv_ssl.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------------------------------ the version check
def test_the_installed_ffcv_is_the_supported_one():
    assert ffcv_compat.installed_ffcv_version() == ffcv_compat.FFCV_VERSION == "1.0.2"
    ffcv_compat.check_ffcv_version()


@pytest.mark.parametrize("installed, says", [("1.1.0", "ffcv 1.1.0 is installed"), (None, "ffcv is not installed")])
def test_another_ffcv_is_one_line_naming_both_versions_and_the_fix(monkeypatch, installed, says):
    monkeypatch.setattr(ffcv_compat, "installed_ffcv_version", lambda: installed)
    with pytest.raises(UserError) as err:
        ffcv_compat.check_ffcv_version()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(says)
    assert "written for ffcv 1.0.2" in message and "pip install ffcv==1.0.2" in message


def _enter_safe_os_cache():
    with ffcv_compat.safe_os_cache():
        pass


WORKAROUNDS = {
    "safe_epoch_iterator": lambda: ffcv_compat.safe_epoch_iterator(),
    "safe_os_cache": _enter_safe_os_cache,
    "register_imdecode": lambda: ffcv_compat.register_imdecode.__wrapped__(),    # past the per-process cache
    "beton names": lambda: ffcv_compat.__getattr__("HeaderType"),                # past the cached global
}


@pytest.mark.parametrize("use", WORKAROUNDS.values(), ids=WORKAROUNDS.keys())
def test_every_workaround_checks_the_version_first(monkeypatch, use):
    monkeypatch.setattr(ffcv_compat, "installed_ffcv_version", lambda: "1.1.0")
    with pytest.raises(UserError, match="ffcv 1.1.0 is installed"):
        use()


def test_importing_ffcv_after_ffcv_ssl_with_another_version_fails_with_the_one_line():
    proc = _run("import ffcv_ssl\nfrom ffcv_ssl import ffcv_compat\n"
                "ffcv_compat.installed_ffcv_version = lambda: '1.1.0'\n"
                "try:\n    import ffcv\nexcept ffcv_ssl.UserError as exc:\n    print(exc)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ffcv 1.1.0 is installed") and "pip install ffcv==1.0.2" in proc.stdout


def test_the_module_imports_none_of_ffcv_numba_torch_numpy():
    proc = _run("import sys\nimport ffcv_ssl.ffcv_compat\n"
                "print(sorted(m for m in ('ffcv', 'numba', 'torch', 'numpy') if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------------ the .beton format
def _fields(dtype: np.dtype):
    return [(name, dtype[name].base.str, dtype[name].shape) for name in dtype.names]


def test_beton_header_descriptor_and_table_types_are_1_0_2s():
    from ffcv_ssl.ffcv_compat import ALLOC_TABLE_TYPE, CURRENT_VERSION, FieldDescType, HeaderType

    assert CURRENT_VERSION == 2
    assert _fields(HeaderType) == [("version", "<u2", ()), ("num_fields", "<u2", ()), ("page_size", "<u4", ()),
                                   ("num_samples", "<u8", ()), ("alloc_table_ptr", "<u8", ())]
    assert HeaderType.itemsize == 24
    assert _fields(FieldDescType) == [("type_id", "|u1", ()), ("name", "|u1", (16,)), ("arguments", "|u1", (1024,))]
    assert _fields(ALLOC_TABLE_TYPE) == [("sample_id", "<u8", ()), ("ptr", "<u8", ()), ("size", "<u8", ())]


def test_field_type_ids_handlers_and_name_decoding_are_1_0_2s():
    from ffcv.fields import BytesField, FloatField, IntField, JSONField, NDArrayField, RGBImageField, TorchTensorField

    from ffcv_ssl.ffcv_compat import (TYPE_ID_HANDLER, FieldDescType, decode_null_terminated_string, get_handlers,
                                      get_metadata_type)

    assert TYPE_ID_HANDLER == {0: FloatField, 1: IntField, 2: RGBImageField, 3: BytesField, 4: NDArrayField,
                               5: JSONField, 6: TorchTensorField, 255: None}
    fields = [RGBImageField(), IntField()]
    descriptors = np.zeros(2, dtype=FieldDescType)
    for row, name, field in zip(descriptors, ("image", "label"), fields):
        row["type_id"] = {v: k for k, v in TYPE_ID_HANDLER.items()}[type(field)]
        row["name"][:len(name)] = np.frombuffer(name.encode("ascii"), "<u1")
        row["arguments"][:] = field.to_binary()[0]
    assert [decode_null_terminated_string(n) for n in descriptors["name"]] == ["image", "label"]
    assert [type(h) for h in get_handlers(descriptors)] == [RGBImageField, IntField]
    assert get_metadata_type(fields).names == ("f0", "f1")
    assert "data_ptr" in get_metadata_type(fields)["f0"].names


def test_page_sizes_are_ffcv_writers():
    from ffcv import writer

    assert ffcv_compat.MIN_PAGE_SIZE == writer.MIN_PAGE_SIZE
    assert ffcv_compat.DEFAULT_PAGE_SIZE == inspect.signature(writer.DatasetWriter).parameters["page_size"].default


def test_field_encode_asks_malloc_for_its_data_and_stores_the_pointer():
    """The protocol ``beton._CaptureMalloc`` implements: ``malloc(size) -> (pointer, uint8 buffer)``."""
    from ffcv.fields import IntField, RGBImageField

    from ffcv_ssl.ffcv_compat import get_metadata_type

    calls = []

    def malloc(size):
        calls.append(size)
        return 12345, np.zeros(size, "<u1")

    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    fields = [RGBImageField(write_mode="raw"), IntField()]
    row = np.zeros(1, dtype=get_metadata_type(fields))
    fields[0].encode(row["f0"][0:1], image, malloc)
    fields[1].encode(row["f1"][0:1], 7, malloc)
    assert calls == [image.nbytes]                  # the image asked once, for its pixels; the int lives in the row
    assert int(row["f0"]["data_ptr"][0]) == 12345
    assert (int(row["f0"]["height"][0]), int(row["f0"]["width"][0])) == (4, 5)
    assert int(row["f1"][0]) == 7


# ------------------------------------------------------------------------------------------------ imdecode
def test_imdecode_is_declared_with_1_0_2s_c_signature():
    from ffcv.libffcv import ctypes_imdecode
    from numba import types

    as_numba = {ctypes.c_void_p: types.voidptr, ctypes.c_uint64: types.uint64, ctypes.c_uint32: types.uint32,
                ctypes.c_bool: types.boolean, ctypes.c_int32: types.int32}
    declared = ffcv_compat.register_imdecode().sig
    assert [as_numba[t] for t in ctypes_imdecode.argtypes] == list(declared.args)
    assert as_numba[ctypes_imdecode.restype] == declared.return_type
    assert ffcv_compat.register_imdecode() is ffcv_compat.register_imdecode()     # registered once per process


# ------------------------------------------------------------------------------------------------ import hook, loader
def test_the_import_hooks_trigger_is_an_ffcv_module():
    assert importlib.util.find_spec(ffcv_compat.TRIGGER) is not None


def test_epoch_iterator_has_what_the_safe_subclass_overrides_and_uses():
    from ffcv.loader.epoch_iterator import EpochIterator

    assert issubclass(EpochIterator, threading.Thread)
    assert "run" in vars(EpochIterator) and "__next__" in vars(EpochIterator)
    init = inspect.getsource(EpochIterator.__init__)
    assert "self.terminate_event" in init and "self.output_queue" in init
    safe = ffcv_compat.safe_epoch_iterator()
    assert issubclass(safe, EpochIterator) and {"run", "__next__"} <= set(vars(safe))


def test_os_cache_manager_is_swapped_for_one_loader_and_reads_on_a_read_only_mapping():
    from ffcv.loader import loader as ffcv_loader
    from ffcv.memory_managers.os_cache import OSCacheManager

    assert isinstance(vars(OSCacheManager)["state_type"], property) and "compile_reader" in vars(OSCacheManager)
    assert ffcv_loader.OSCacheManager is OSCacheManager            # the name ffcv's Loader looks up
    with ffcv_compat.safe_os_cache():
        safe = ffcv_loader.OSCacheManager
        assert safe is not OSCacheManager and issubclass(safe, OSCacheManager)
        read = safe.compile_reader(object.__new__(safe))
    assert ffcv_loader.OSCacheManager is OSCacheManager
    mapping = np.arange(10, dtype=np.uint8)
    mapping.flags.writeable = False
    sample = read(np.uint64(4), (mapping, np.array([0, 4], np.uint64), np.array([4, 6], np.uint64)))
    assert sample.tolist() == [4, 5, 6, 7, 8, 9]
