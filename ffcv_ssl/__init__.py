"""ffcv-ssl: fast multi-view loading, SSL objectives and evaluation for Cole et al., CVPR 2022 (arXiv 2105.05837).

Heavy submodules (ffcv, torch, numba) are imported lazily by the code that needs them, so that
``ffcv-ssl --help`` and config validation stay fast.
"""
from ._ffcv_import import install as _install_ffcv_import_hook
from ._version import __version__
from .errors import UserError

__all__ = ["__version__", "UserError"]

_install_ffcv_import_hook()     # numba caches ffcv's import-time typed-dict compile (_ffcv_import.py)
