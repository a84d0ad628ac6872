"""ffcv-ssl: fast multi-view loading, SSL objectives and evaluation for Cole et al., CVPR 2022 (arXiv 2105.05837).

Heavy submodules (ffcv, torch, numba) are imported lazily by the code that needs them, so that
``ffcv-ssl --help`` and config validation stay fast.
"""
import os as _os

from ._version import __version__
from .errors import UserError
from .ffcv_compat import install_import_hook as _install_ffcv_import_hook
from .util import cpu_budget as _cpu_budget

__all__ = ["__version__", "UserError"]

_install_ffcv_import_hook()     # at ffcv's first import: check its version, cache its typed-dict compile (ffcv_compat.py)

# On a 1-CPU affinity mask (a SLURM task with cpus_per_task=1) numba's TBB layer deadlocks at interpreter exit
# (unload_tbb waits forever): the work is done, the process never ends. OpenMP, also thread-safe, exits cleanly.
# Set before numba is imported (it reads the variable then); a user's own choice wins. Found by `ffcv-ssl rehearse`
# (tests/test_rehearse.py::test_a_one_cpu_job_exits_after_its_work).
if _cpu_budget() == 1:
    _os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
