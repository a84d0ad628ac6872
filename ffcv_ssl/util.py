"""Small helpers that several layers need, kept once here (foundation layer: imports nothing of ours).

- ``file_sha256``: the identity of a beton (manifests, ``inspect``, the evaluation cache key) and of an exported
  backbone; read in 4 MiB blocks so a 100 GB beton is hashed in constant memory.
- ``cpu_budget``: the CPUs this process may use. On SLURM and in containers the affinity mask (cgroups/cpusets)
  is smaller than ``os.cpu_count()``, and sizing pools by the host's count oversubscribes the allocation.
- ``pid_alive``: whether the writer named in a temporary's name still runs (stale-temporary cleanup of the beton
  writer and of the feature cache).
"""
from __future__ import annotations

import hashlib
import os
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


def file_sha256(path: PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def cpu_budget() -> int:
    """CPUs this process may use: the affinity mask (SLURM/cgroups), never the host's core count."""
    return max(1, len(os.sched_getaffinity(0)))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a stale temporary's writer is gone when it does not)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # someone else's live process
        return True
    return True
