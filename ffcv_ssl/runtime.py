"""Process-wide runtime choices made once, before the first parallel numba kernel runs."""
from __future__ import annotations

import os


def configure_numba() -> str:
    """Require a thread-safe numba threading layer (TBB, else OpenMP).

    numba's default ``workqueue`` layer aborts the process when two ffcv Loaders iterate at once
    (train + val), because each Loader launches parallel kernels from its own thread. Returns the
    configured layer request; ``NUMBA_THREADING_LAYER`` set by the user wins.
    """
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "threadsafe"
    return str(numba.config.THREADING_LAYER)

