"""Submit a sweep: one submitit job array per stage, SLURM dependencies between stages, live status, results.

On SLURM every stage is submitted at once, each array depending (``afterok``) on the previous stage's
array. The local executor has no dependencies, so stages run one after another there, at most
``max_parallel`` jobs at a time. Every wait has a deadline; a failed job's remote traceback is shown; a
cancelled job is reported as such; finished jobs are never submitted again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import submitit

from ffcv_ssl.console import console
from ffcv_ssl.errors import UserError

from .cluster import DEFAULT_PARTITION, slurm_up
from .jobs import Job, JobPack, member_error
from .sweep import Stage, describe, pending

CLUSTERS = ("slurm", "local", "debug")
_FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "DEADLINE",
          "BOOT_FAIL", "DONE", "INTERRUPTED", "FINISHED"}


@dataclass
class Outcome:
    job: str
    state: str
    detail: str = ""


@dataclass
class SweepReport:
    submitted: int = 0
    skipped: int = 0
    outcomes: List[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> List[Outcome]:
        return [o for o in self.outcomes if o.state != "COMPLETED"]


def choose_cluster(requested: Optional[str]) -> str:
    """``--cluster`` default: SLURM when ``scontrol ping`` answers, else the local executor."""
    if requested is None:
        return "slurm" if slurm_up() else "local"
    if requested not in CLUSTERS:
        raise UserError(f"--cluster {requested!r} must be one of {', '.join(CLUSTERS)}")
    if requested == "slurm" and not slurm_up():
        raise UserError("--cluster slurm, but no SLURM controller answers 'scontrol ping'; start one "
                        "(sudo slurm/cluster.sh start) or use --cluster local")
    return requested


def _executor(folder: Path, cluster: str, stage: Stage, partition: Optional[str], max_parallel: int,
              dependency: Optional[str], name: str) -> submitit.Executor:
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster, slurm_max_num_timeout=3)
    r = stage.resources
    params: Dict[str, Any] = dict(timeout_min=r.timeout_min, cpus_per_task=r.cpus_per_task, mem_gb=r.mem_gb,
                                  nodes=r.nodes, tasks_per_node=r.tasks_per_node, name=name)
    if r.gpus_per_node:
        params["gpus_per_node"] = r.gpus_per_node
    if cluster == "slurm":
        params["slurm_partition"] = partition or DEFAULT_PARTITION
        params["slurm_array_parallelism"] = max_parallel
        params["slurm_signal_delay_s"] = 120
        if dependency:
            params["slurm_additional_parameters"] = {"dependency": dependency, "kill-on-invalid-dep": "yes"}
    ex.update_parameters(**params)
    return ex


def _state(job: submitit.Job) -> str:
    try:
        state = job.get_info(mode="force").get("State") if isinstance(job, submitit.slurm.slurm.SlurmJob) else job.state
    except Exception:  # noqa: BLE001 - sacct hiccups: keep polling
        state = job.state
    state = str(state or "UNKNOWN").split()[0]
    if job.done() and state in ("UNKNOWN", "RUNNING", "PENDING", "REQUEUED"):
        state = "FINISHED"
    return state


def _outcome(job: Job, sjob: submitit.Job, state: str) -> Outcome:
    if job.done():
        return Outcome(job.name, "COMPLETED")
    if state.startswith("CANCELLED"):
        return Outcome(job.name, "CANCELLED", f"job {sjob.job_id} was cancelled")
    try:
        exc = sjob.exception()
    except Exception as err:  # noqa: BLE001 - e.g. UncompletedJobError without a result pickle
        exc = err
    detail = member_error(str(exc), job.name) if exc is not None else \
        f"ended in state {state} without producing {', '.join(job.outputs)}"
    return Outcome(job.name, "FAILED" if state in ("FINISHED", "COMPLETED", "FAILED") else state, detail)


def _wait(running: Sequence[Tuple[Job, submitit.Job]], deadline: float, live=None,
          poll_s: float = 2.0) -> List[Outcome]:
    """Poll until every job ends or ``deadline`` (epoch seconds) passes; never a bare ``result()``.

    ``poll_s``: 2 s on SLURM (each poll may call sacct); local jobs are polled every 0.5 s, since their
    state is a file read and a short job should not wait seconds for the next one to start.
    """
    remaining = list(running)
    outcomes: List[Outcome] = []
    while remaining:
        still = []
        states: Dict[int, str] = {}                      # one query per submitit job (packs share one)
        for job, sjob in remaining:
            state = states[id(sjob)] = states[id(sjob)] if id(sjob) in states else _state(sjob)
            if sjob.done() or state in _FINAL or state.startswith("CANCELLED"):
                outcomes.append(_outcome(job, sjob, state))
            else:
                still.append((job, sjob))
        remaining = still
        if live is not None:
            live(outcomes, remaining)
        if remaining and time.time() > deadline:
            for job, sjob in remaining:
                sjob.cancel(check=False)
                outcomes.append(Outcome(job.name, "DEADLINE", f"no result before the deadline; job {sjob.job_id} "
                                                            "was cancelled"))
            break
        if remaining:
            time.sleep(poll_s)
    return outcomes


def make_packs(todo: Sequence[Job], pack: int, parallel: int) -> List[List[Job]]:
    """Split a stage's jobs into array tasks of at most ``pack`` jobs each, but into at least ``parallel``
    tasks when there are that many jobs (so every slot has work); sizes differ by at most one, order kept."""
    if pack <= 1 or len(todo) <= 1:
        return [[j] for j in todo]
    n = min(len(todo), max(-(-len(todo) // pack), parallel))
    size, extra = divmod(len(todo), n)
    out, start = [], 0
    for k in range(n):
        end = start + size + (1 if k < extra else 0)
        out.append(list(todo[start:end]))
        start = end
    return out


def _task(group: Sequence[Job]):
    """What one array task runs: the job itself, or a ``JobPack`` of several."""
    return group[0] if len(group) == 1 else JobPack(tuple(group))


def run_sweep(name: str, stages: List[Tuple[Stage, List[Job]]], *, cluster: str, folder: Path,
              partition: Optional[str] = None, max_parallel: int = 4, wait: bool = True,
              pack: int = 1) -> SweepReport:
    """Submit what is not done yet and (by default) wait for it, printing progress per stage.

    ``pack``: jobs per array task (default 1: one process per job). Above 1, a stage's jobs are grouped into
    ``JobPack``s run one after another in one process, which saves the start-up of a process per job
    (seconds of imports) for short jobs; outcomes are still reported per job.
    """
    report = SweepReport()
    if cluster == "slurm":
        return _run_slurm(name, stages, folder, partition, max_parallel, wait, report, pack)
    for stage, jobs in stages:           # local/debug: no dependencies, so stage after stage
        todo = pending(jobs)
        report.skipped += len(jobs) - len(todo)
        if not todo:
            continue
        ex = _executor(folder, cluster, stage, partition, max_parallel, None, f"{name}-{stage.name}")
        groups = make_packs(todo, pack, max_parallel)
        outcomes: List[Outcome] = []
        live = _printer(stage.name, len(todo))
        offset = 0
        for start in range(0, len(groups), max_parallel):
            chunk = groups[start:start + max_parallel]
            submitted = [(job, sjob) for group in chunk for sjob in [ex.submit(_task(group))] for job in group]
            report.submitted += len(submitted)
            deadline = time.time() + max(len(g) for g in chunk) * (stage.resources.timeout_min * 60 * 4 + 600)
            # one printer per stage, so a new chunk does not repeat the last "k/n ended" line
            outcomes += _wait(submitted, deadline, poll_s=0.5,
                              live=lambda done, remaining, offset=offset: live(done, remaining, offset))
            offset += len(submitted)
        report.outcomes += outcomes
        if any(o.state != "COMPLETED" for o in outcomes):
            break                        # later stages need these outputs
    return report


def _run_slurm(name: str, stages: List[Tuple[Stage, List[Job]]], folder: Path, partition: Optional[str],
               max_parallel: int, wait: bool, report: SweepReport, pack: int = 1) -> SweepReport:
    """All stages at once: one array per stage, each ``afterok`` on the previous stage's array."""
    previous: List[str] = []
    submitted_all: List[Tuple[Stage, List[Tuple[Job, submitit.Job]]]] = []
    for stage, jobs in stages:
        todo = pending(jobs)
        report.skipped += len(jobs) - len(todo)
        if not todo:
            continue
        dependency = f"afterok:{':'.join(previous)}" if previous else None
        ex = _executor(folder, "slurm", stage, partition, max_parallel, dependency, f"{name}-{stage.name}")
        groups = make_packs(todo, pack, max_parallel)
        with ex.batch():
            tasks = [(group, ex.submit(_task(group))) for group in groups]
        submitted = [(job, sjob) for group, sjob in tasks for job in group]
        report.submitted += len(submitted)
        previous = sorted({s.job_id.split("_")[0] for _, s in submitted})
        console.print(f"stage [bold]{stage.name}[/]: {len(submitted)} job(s)"
                      + (f" in {len(tasks)} task(s)" if len(tasks) != len(submitted) else "")
                      + f", array {', '.join(previous)}"
                      + (f", starts after {dependency}" if dependency else ""))
        submitted_all.append((stage, submitted))
    if not wait:
        return report
    deadline = time.time() + sum(s.resources.timeout_min * 60 * 4 + 600 for s, subs in submitted_all for _ in subs)
    for stage, submitted in submitted_all:
        report.outcomes += _wait(submitted, deadline, live=_printer(stage.name, len(submitted)))
    return report


def _printer(stage: str, total: int):
    """A progress line per change of the count of ended jobs (``offset``: jobs of earlier chunks)."""
    last = {"n": -1}

    def show(done: List[Outcome], remaining: list, offset: int = 0) -> None:
        n = offset + len(done)
        if n != last["n"]:
            last["n"] = n
            bad = sum(o.state != "COMPLETED" for o in done)
            console.print(f"  {stage}: {n}/{total} ended" + (f", {bad} not completed" if bad else ""))
    return show


def plan_table(stages: List[Tuple[Stage, List[Job]]]):
    from rich.table import Table

    table = Table(title="sweep plan")
    for col in ("stage", "kind", "jobs", "done", "to run", "resources"):
        table.add_column(col, justify="right" if col in ("jobs", "done", "to run") else "left")
    for row in describe(stages):
        table.add_row(row["stage"], row["kind"], str(row["jobs"]), str(row["done"]), str(row["to_run"]),
                      row["resources"])
    return table
