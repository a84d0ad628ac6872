"""pytest fixtures and helpers for tests against the real single-node SLURM cluster (``slurm/cluster.sh``).

Loaded as a plugin from ``tests/conftest.py`` (``pytest_plugins = ["slurm_support"]``). The session fixture starts
the cluster only when none is usable and we are root, and stops it at the end only if it started it, so a developer's
running cluster (or CI's, started before pytest) is left alone. ``TEST_SLURM=0`` skips every SLURM test;
``TEST_SLURM=1`` turns "cannot start a cluster" into a failure instead of a skip; ``SLURM_KEEP=1`` keeps a cluster
the session started.

Every wait on a job has a deadline (:func:`wait_done`): a broken cluster must fail a test, never hang CI.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class SlurmCluster:
    """What a test needs to know about the running cluster."""

    partition: str
    started_by_session: bool


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A usable local SLURM cluster for the whole session (skips with the reason when there is none to be had)."""
    # imported here, not at the top: conftest loads this plugin for every test run, SLURM or not
    from ffcv_ssl.slurm.cluster import DEFAULT_PARTITION, SCRIPT, ClusterError, cluster_usable, ensure_cluster, stop_cluster

    mode = os.environ.get("TEST_SLURM", "auto")
    if mode == "0":
        pytest.skip("TEST_SLURM=0: SLURM tests disabled")
    must = mode == "1"

    def unavailable(reason: str) -> None:
        (pytest.fail if must else pytest.skip)(reason)

    started = False
    if not cluster_usable():
        if os.geteuid() != 0:
            unavailable(f"no usable SLURM cluster and not root to start one (run 'sudo bash {SCRIPT} start')")
        if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
            unavailable("no usable SLURM cluster, and slurm/cluster.sh installs Slurm only on Debian/Ubuntu")
        try:
            started = ensure_cluster()
        except ClusterError as exc:
            pytest.fail(str(exc))  # root on Debian: a cluster that will not start is a bug, not a reason to skip
    yield SlurmCluster(partition=os.environ.get("SLURM_PARTITION", DEFAULT_PARTITION), started_by_session=started)
    if started and os.environ.get("SLURM_KEEP") != "1":
        stop_cluster()


@pytest.fixture
def slurm_executor(slurm_cluster: SlurmCluster, tmp_path: Path) -> Any:
    """A submitit executor on the local cluster, logging into this test's own folder.

    ``cluster="slurm"`` is explicit: ``AutoExecutor`` would also pick SLURM with the daemons down and fail later.
    ``slurm_setup`` puts the repository on the jobs' ``PYTHONPATH``, so callables from ``slurm``/``ffcv_ssl``
    unpickle on the node whatever directory pytest runs from. ``timeout_min`` stays >= 15: below ~12.5 min, submitit's
    ``has_timed_out`` rule (``min(0.8 T, T - 10 min) < 0``) counts every USR2, even a preemption, as a time-out.
    """
    import submitit

    executor = submitit.AutoExecutor(folder=tmp_path / "submitit" / "%j", cluster="slurm")
    executor.update_parameters(
        slurm_partition=slurm_cluster.partition, timeout_min=15, cpus_per_task=1, slurm_array_parallelism=4,
        slurm_setup=[f"export PYTHONPATH={REPO_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"],
    )
    return executor


def wait_done(job: Any, timeout_s: float, poll_s: float = 0.5) -> None:
    """Poll ``job.done()`` until it is true, or cancel the job and fail the test after ``timeout_s`` seconds.

    Every 2 s the poll forces a ``sacct`` query: submitit's own back-off reaches 60 s between queries, which would
    hide a job that died without writing a result (cancelled, OOM-killed) for up to a minute.
    """
    deadline = time.monotonic() + timeout_s
    last_force = 0.0
    while True:
        force = time.monotonic() - last_force >= 2.0
        if force:
            last_force = time.monotonic()
        if job.done(force_check=force):
            return
        if time.monotonic() > deadline:
            state = job.state
            job.cancel(check=False)
            pytest.fail(f"job {job.job_id} not done after {timeout_s:.0f} s (state {state});"
                        f" stderr tail: {(job.stderr() or '')[-2000:]}")
        time.sleep(poll_s)


def sacct_states(job_id: str) -> Dict[str, str]:
    """``{job id: state}`` of a job (or of every task of an array) as accounting records them."""
    res = subprocess.run(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "JobID,State"],
                         capture_output=True, text=True, timeout=30, check=True)
    return dict(line.split("|", 1) for line in res.stdout.splitlines() if "|" in line)


def wait_sacct(job_id: str, predicate, timeout_s: float, poll_s: float = 0.3) -> Dict[str, str]:
    """Poll :func:`sacct_states` until ``predicate(states)`` holds; fail the test after ``timeout_s`` seconds.

    Accounting lags the controller by a moment (slurmctld forwards to slurmdbd asynchronously).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        states = sacct_states(job_id)
        if predicate(states):
            return states
        if time.monotonic() > deadline:
            pytest.fail(f"sacct for job {job_id} still shows {states} after {timeout_s:.0f} s")
        time.sleep(poll_s)
