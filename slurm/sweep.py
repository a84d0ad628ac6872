"""Sweep files: stages of templated ``ffcv-ssl`` invocations expanded over a grid into frozen jobs.

A sweep (``configs/sweeps/*.yaml``) lists variables and stages (write -> pretrain -> evaluate). Each stage
expands the cartesian product of its ``grid`` times each of its ``cases`` into jobs; ``{name}`` in a
stage's ``args`` is replaced by the job's variables (``{{``/``}}`` for literal braces), and each rendered
argument is split like a shell word list (a variable may hold several arguments, or none). Expansion and
validation need no cluster: every config loads against its schema, and every input (beton, checkpoint)
either exists or is an output of an earlier stage, before anything is submitted.
"""
from __future__ import annotations

import itertools
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ffcv_ssl.config import ConfigError, load_config
from ffcv_ssl.errors import UserError

from .jobs import JOB_KINDS, Job, make_job

STAGE_KINDS = tuple(JOB_KINDS)


@dataclass
class Resources:
    """What one job of a stage asks the cluster for. GPUs: one task (process) per GPU on each node."""

    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 4
    mem_gb: int = 16
    timeout_min: int = 60

    def validate(self) -> None:
        if self.nodes < 1 or self.gpus_per_node < 0 or self.cpus_per_task < 1 or self.mem_gb < 1 or self.timeout_min < 1:
            raise ConfigError("resources: need nodes >= 1, gpus_per_node >= 0, cpus_per_task >= 1, mem_gb >= 1, "
                              "timeout_min >= 1")

    @property
    def tasks_per_node(self) -> int:
        return max(1, self.gpus_per_node)


@dataclass
class Stage:
    name: str
    kind: str                                            # write | pretrain | eval
    args: List[str] = field(default_factory=list)        # templated argv (write) or key=value overrides
    config: str = ""                                     # pretrain/eval: YAML config (templated)
    eval_kind: str = "linear"                            # eval: linear, knn, hierarchical, concat, finetune, ...
    grid: Dict[str, List[Any]] = field(default_factory=dict)
    cases: List[Dict[str, Any]] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)

    def validate(self) -> None:
        if self.kind not in STAGE_KINDS:
            raise ConfigError(f"stage '{self.name}': kind {self.kind!r} must be one of {', '.join(STAGE_KINDS)}")
        for var, values in self.grid.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"stage '{self.name}': grid.{var} must be a non-empty list")


@dataclass
class Sweep:
    """One experiment of the study as stages of jobs.

    Attributes:
        paper: what it reproduces (e.g. "Fig 4, Δ top-1 under corruptions").
        vars: defaults of the template variables, overridable with ``ffcv-ssl submit --set name=value``.
        expect: expected job counts per stage (checked at expansion: catches a grid edited by mistake).
    """

    name: str
    description: str = ""
    paper: str = ""
    vars: Dict[str, Any] = field(default_factory=dict)
    stages: List[Stage] = field(default_factory=list)
    expect: Dict[str, int] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.stages:
            raise ConfigError(f"sweep '{self.name}' has no stages")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"sweep '{self.name}': stage names must be unique, got {names}")


def load_sweep(path: str | Path, sets: Sequence[str] = ()) -> Sweep:
    """Load and validate a sweep file; ``sets`` are ``name=value`` overrides of its ``vars``."""
    sweep = load_config(Sweep, path)
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r} must be NAME=VALUE")
        if key not in sweep.vars:
            import difflib

            close = difflib.get_close_matches(key, list(sweep.vars), n=1)
            raise UserError(f"--set {key}: the sweep has no variable '{key}'"
                            + (f"; did you mean '{close[0]}'?" if close else f" (variables: {', '.join(sweep.vars)})"))
        sweep.vars[key] = value
    return sweep


def _combinations(stage: Stage) -> List[Dict[str, Any]]:
    names = list(stage.grid)
    grid = [dict(zip(names, values)) for values in itertools.product(*(stage.grid[n] for n in names))] or [{}]
    cases = stage.cases or [{}]
    return [{**g, **c} for g in grid for c in cases]


class _Vars(dict):
    def __init__(self, values: Dict[str, Any], where: str):
        super().__init__(values)
        self.where = where

    def __missing__(self, key: str) -> Any:
        raise UserError(f"{self.where}: template variable '{{{key}}}' is not defined (variables: "
                        f"{', '.join(sorted(self)) or 'none'})")


def render(template: str, values: Dict[str, Any], where: str) -> str:
    """Fill ``{name}`` fields; values may themselves hold fields (a case's ``parts`` naming ``{data}``)."""
    text = str(template)
    for _ in range(4):
        try:
            new = string.Formatter().vformat(text, (), _Vars(values, where))
        except (ValueError, IndexError) as exc:
            raise UserError(f"{where}: bad template {template!r} ({exc}); use {{{{ and }}}} for literal braces") from None
        if new == text or "{" not in new:
            return new
        text = new
    return text


#: A hook that changes a job's rendered arguments before the job is built: ``(stage, config, args) -> args``,
#: where ``config`` is the stage's rendered config path ("" for write stages). ``ffcv-ssl rehearse`` passes
#: one (``ffcv_ssl/rehearse/profile.py``) to run the study's sweep files unchanged at a documented smaller
#: scale; ``ffcv-ssl submit`` passes none.
ArgsHook = Callable[[Stage, str, Tuple[str, ...]], Tuple[str, ...]]


def expand(sweep: Sweep, rewrite: Optional[ArgsHook] = None) -> List[Tuple[Stage, List[Job]]]:
    """Every stage with its jobs, in stage order; job names are unique within the sweep.

    ``rewrite``: optional :data:`ArgsHook` applied to each job's arguments after rendering; job inputs and
    outputs are resolved from the rewritten arguments, so skipping and validation see what will run.
    """
    out: List[Tuple[Stage, List[Job]]] = []
    seen: Dict[str, str] = {}
    for stage in sweep.stages:
        jobs = []
        for combo in _combinations(stage):
            values = {**sweep.vars, **combo}
            label = ",".join(f"{k}={v}" for k, v in combo.items()) or "-"
            where = f"sweep {sweep.name}, stage {stage.name} [{label}]"
            # each rendered argument is split like a shell word list, so a variable may hold several
            # arguments ("--corrupt paper_jpeg") or none (""); write lists without spaces: budgets=[10k,all]
            args = [tok for a in stage.args for tok in shlex.split(render(a, values, where))]
            config = render(stage.config, values, where) if stage.config else ""
            if rewrite is not None:
                args = list(rewrite(stage, config, tuple(args)))
            eval_kind = render(stage.eval_kind, values, where)     # e.g. "{probe}": the sweep picks the protocol
            job = make_job(stage.kind, name=f"{stage.name}[{label}]", stage=stage.name, args=tuple(args),
                           config=config, eval_kind=eval_kind)
            for output in job.outputs:
                if output in seen:
                    raise UserError(f"{where}: output {output} is also written by {seen[output]}; give each job "
                                    "its own output path")
                seen[output] = job.name
            jobs.append(job)
        if stage.name in sweep.expect and sweep.expect[stage.name] != len(jobs):
            raise UserError(f"sweep {sweep.name}: stage {stage.name} expands to {len(jobs)} jobs, the sweep "
                            f"expects {sweep.expect[stage.name]} (check its grid)")
        out.append((stage, jobs))
    return out


def validate_inputs(stages: List[Tuple[Stage, List[Job]]]) -> None:
    """Every input exists or is produced by an earlier stage (checked before anything is submitted)."""
    produced: Dict[str, str] = {}
    for stage, jobs in stages:
        for job in jobs:
            for needed in job.inputs:
                if needed in produced or Path(needed).exists():
                    continue
                raise UserError(f"stage {stage.name}, job {job.name} needs {needed}: it does not exist and no earlier "
                                "stage produces it; write it first or fix the path")
        for job in jobs:
            for output in job.outputs:
                produced[output] = job.name


def plan(path: str | Path, sets: Sequence[str] = (),
         rewrite: Optional[ArgsHook] = None) -> Tuple[Sweep, List[Tuple[Stage, List[Job]]]]:
    """Load, expand and validate: what ``ffcv-ssl submit --dry-run`` shows (``rewrite``: see :func:`expand`)."""
    sweep = load_sweep(path, sets)
    stages = expand(sweep, rewrite)
    validate_inputs(stages)
    return sweep, stages


def pending(jobs: Sequence[Job]) -> List[Job]:
    return [j for j in jobs if not j.done()]


def find_sweeps(directory: str | Path) -> List[Path]:
    return sorted(Path(directory).glob("*.yaml"))


def describe(stages: List[Tuple[Stage, List[Job]]]) -> List[Dict[str, Any]]:
    rows = []
    for stage, jobs in stages:
        todo = pending(jobs)
        r = stage.resources
        rows.append({"stage": stage.name, "kind": stage.kind if stage.kind != "eval" else
                     "eval " + "/".join(sorted({j.eval_kind for j in jobs} or {stage.eval_kind})),
                     "jobs": len(jobs), "done": len(jobs) - len(todo), "to_run": len(todo),
                     "resources": f"{r.nodes} node x {r.tasks_per_node} task, {r.gpus_per_node} GPU, "
                                  f"{r.cpus_per_task} CPU, {r.mem_gb}G, {r.timeout_min}m"})
    return rows


def job_index(stages: List[Tuple[Stage, List[Job]]]) -> Dict[str, Job]:
    return {j.name: j for _, jobs in stages for j in jobs}


def first_stage_with(stages: List[Tuple[Stage, List[Job]]], kind: str) -> Optional[Stage]:
    return next((s for s, _ in stages if s.kind == kind), None)
