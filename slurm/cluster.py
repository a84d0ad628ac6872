"""Drive the single-node development SLURM cluster (``slurm/cluster.sh``) from Python: tests and ``ffcv-ssl submit``.

Liveness is ``scontrol ping``, never "is ``srun`` on PATH": submitit's ``AutoExecutor`` picks SLURM whenever ``srun``
exists, even with the daemons down, and then fails at ``sbatch``. ``scontrol ping`` answers in milliseconds (rc 1
when slurmctld is down), where ``sinfo`` takes ~9 s to give up.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Mapping, Optional

from ffcv_ssl.errors import UserError

SCRIPT = Path(__file__).resolve().with_name("cluster.sh")
DEFAULT_PARTITION = "debug"


class ClusterError(UserError):
    """The local SLURM cluster could not be reached, started or stopped; the message says what to do."""


def slurm_up(timeout: float = 5.0) -> bool:
    """Whether a slurmctld answers ``scontrol ping`` within ``timeout`` seconds.

    This only says that the controller is up; :func:`cluster_usable` also checks the node and ``sacct``.
    """
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        return False
    try:
        res = subprocess.run([scontrol, "ping"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "is UP" in res.stdout


def _run_script(action: str, timeout: float, env: Optional[Mapping[str, str]]) -> subprocess.CompletedProcess:
    """Run ``cluster.sh ACTION``; its messages (stderr) are captured so a failure can be reported in one line."""
    full_env = {**os.environ, **(env or {})}
    try:
        return subprocess.run(["bash", str(SCRIPT), action], capture_output=True, text=True, timeout=timeout,
                              env=full_env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"{SCRIPT} {action} did not finish within {timeout:.0f} s: see /var/log/slurm/") from exc


def _last_error(res: subprocess.CompletedProcess) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line]
    return (errors or lines or [f"exit status {res.returncode}"])[-1]


def cluster_usable(timeout: float = 60.0) -> bool:
    """Whether the node can run jobs: ``cluster.sh status`` (controller, node state, and ``sacct`` unless
    ``SLURM_WITH_DBD=0``). Needs no root."""
    if shutil.which("scontrol") is None:
        return False
    return _run_script("status", timeout, None).returncode == 0


def ensure_cluster(timeout: float = 900.0, env: Optional[Mapping[str, str]] = None) -> bool:
    """Make the local cluster usable, starting (and on a fresh machine installing) it if needed.

    Args:
        timeout: seconds allowed for ``cluster.sh start``; ~20 s from nothing, but apt may wait on a dpkg lock.
        env: extra ``SLURM_*`` knobs for the script (see the header of ``slurm/cluster.sh``).

    Returns:
        True if the cluster was not usable and this call started it: only then should the caller stop it again.

    Raises:
        ClusterError: not root while a start is needed, or the start failed (the script's last error line).
    """
    if cluster_usable():
        return False
    if os.geteuid() != 0:
        raise ClusterError(f"no usable SLURM cluster, and starting one needs root: run 'sudo bash {SCRIPT} start'")
    res = _run_script("start", timeout, env)
    if res.returncode != 0:
        raise ClusterError(f"{SCRIPT} start failed: {_last_error(res)}")
    return True


def stop_cluster(timeout: float = 300.0) -> None:
    """Cancel the remaining jobs and stop the daemons that ``cluster.sh`` started (and only those).

    Raises:
        ClusterError: not root, or the script failed.
    """
    if os.geteuid() != 0:
        raise ClusterError(f"stopping the SLURM daemons needs root: run 'sudo bash {SCRIPT} stop'")
    res = _run_script("stop", timeout, None)
    if res.returncode != 0:
        raise ClusterError(f"{SCRIPT} stop failed: {_last_error(res)}")
