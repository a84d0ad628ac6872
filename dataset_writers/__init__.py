"""Dataset writers: official dataset layouts -> ``.beton`` files with a JSON manifest beside each.

Readers (one module per dataset in ``readers/``) register themselves by name; ``write_split`` writes a
split, a nested subset or a corrupted variant through a deterministic, fail-fast writer.
"""
import ffcv_ssl  # noqa: F401  (first: its hook makes importing ffcv ~4 s cheaper, see ffcv_ssl/ffcv_compat.py)

from .errors import ImageError, WriterError
from .manifest import Manifest, manifest_path, read_manifest
from .records import SplitIndex
from .registry import READERS, get_reader, register_reader
from .subsets import nested_subset

__all__ = ["ImageError", "WriterError", "Manifest", "manifest_path", "read_manifest", "SplitIndex", "READERS", "get_reader",
           "register_reader", "nested_subset", "ImageOptions", "write_split"]


def __getattr__(name: str):
    """``ImageOptions`` and ``write_split`` on first use (PEP 562): the writer imports cv2 and ffcv, which the
    light modules (corruption specs, manifests, subsets: read by the report) must not pull in."""
    if name in ("ImageOptions", "write_split"):
        from . import write

        return getattr(write, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
