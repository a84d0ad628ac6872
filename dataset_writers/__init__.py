"""Dataset writers: official dataset layouts -> ``.beton`` files with a JSON manifest beside each.

Readers (one module per dataset in ``readers/``) register themselves by name; ``write_split`` writes a
split, a nested subset or a corrupted variant through a deterministic, fail-fast writer.
"""
import ffcv_ssl  # noqa: F401  (first: its hook makes importing ffcv ~4 s cheaper, see ffcv_ssl/_ffcv_import.py)

from .errors import ImageError, WriterError
from .manifest import manifest_path, read_manifest
from .records import SplitIndex
from .registry import READERS, get_reader, register_reader
from .subsets import nested_subset
from .write import ImageOptions, write_split

__all__ = ["ImageError", "WriterError", "manifest_path", "read_manifest", "SplitIndex", "READERS", "get_reader",
           "register_reader", "nested_subset", "ImageOptions", "write_split"]
