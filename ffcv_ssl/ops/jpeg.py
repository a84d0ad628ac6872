"""ffcv's libjpeg-turbo ``imdecode``, callable from *cached* numba kernels.

``imdecode`` is registered with LLVM by ``ffcv_compat.register_imdecode`` (it depends on ffcv 1.0.2's C
signature); it takes the pointers of ``pointers.py``.
"""
from ..ffcv_compat import register_imdecode

imdecode = register_imdecode()
