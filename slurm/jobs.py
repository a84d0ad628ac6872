"""Jobs of a sweep: small frozen descriptions of one ``ffcv-ssl`` invocation (paths and configs, never data).

submitit pickles one job per array task and unpickles it on the node by import path (this package).
Jobs are idempotent: ``done()`` is true when their outputs exist, and a job that finds its outputs skips
the work, so requeues and re-submitted sweeps are safe. Pretraining jobs are ``Checkpointable``: on
preemption or time limit submitit requeues them, and the engine resumes from the newest checkpoint.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import submitit


def _run_cli(argv: Tuple[str, ...]) -> Any:
    """Run ``ffcv-ssl ARGV`` in this process, letting exceptions (with their tracebacks) propagate."""
    from ffcv_ssl.cli import build_parser

    parser = build_parser()
    args, extra = parser.parse_known_args(list(argv))
    if extra:
        if hasattr(args, "overrides"):
            args.overrides = list(args.overrides or []) + extra
        else:
            raise ValueError(f"unrecognized arguments for ffcv-ssl {argv[0]}: {' '.join(extra)}")
    args.debug = True
    return args._command.run(args)


def _export_distributed() -> None:
    """Under SLURM with several tasks, export torchrun-style variables (RANK, WORLD_SIZE, MASTER_ADDR, ...)."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:
        return                                          # not inside a submitit job (tests call jobs directly)
    if env.num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export()


@dataclass(frozen=True)
class Job:
    """``ffcv-ssl <kind> ...`` for one point of a sweep's grid.

    Attributes:
        name: ``stage[var=value,...]``, unique in the sweep.
        args: the argv after the subcommand (write) or the key=value overrides (pretrain, eval).
        inputs / outputs: files it needs / produces (absolute or relative to the submit directory).
    """

    name: str
    stage: str
    kind: str
    args: Tuple[str, ...]
    config: str
    eval_kind: str
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]

    def done(self) -> bool:
        return bool(self.outputs) and all(Path(o).exists() for o in self.outputs)

    def argv(self) -> Tuple[str, ...]:
        """The equivalent command line (shown in plans and failure reports)."""
        head = {"write": ("write",), "pretrain": ("pretrain", self.config),
                "eval": ("eval", self.eval_kind) + ((self.config,) if self.config else ())}[self.kind]
        return head + self.args

    def __call__(self) -> Dict[str, Any]:
        if self.done():
            return {"job": self.name, "skipped": True, "outputs": list(self.outputs)}
        _export_distributed()
        _run_cli(self.argv())
        missing = [o for o in self.outputs if not Path(o).exists()]
        if missing and os.environ.get("RANK", "0") == "0":
            raise RuntimeError(f"{self.name} finished without producing {', '.join(missing)}")
        return {"job": self.name, "skipped": False, "outputs": list(self.outputs)}


@dataclass(frozen=True)
class PretrainJob(Job, submitit.helpers.Checkpointable):
    """A pretraining job: requeued on preemption/timeout, resumed from ``out_dir/checkpoints``."""

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self)       # the model state is on disk, not in the pickle


@dataclass(frozen=True)
class JobPack(submitit.helpers.Checkpointable):
    """Several jobs of one stage run one after another in ONE process (one array task).

    Every job is a fresh ``python`` that pays its imports (torch, ffcv, timm: seconds) before any work; for
    short jobs (rehearsals, small evaluations) that dominates. A pack pays it once. Each member keeps its own
    outputs and skip rule; a member that fails does not stop the others, and the pack then raises one error
    with a line per failed member (``<job name>: <error>``), which the submitter attributes to each member.
    On preemption or time-out the whole pack is requeued; finished members skip themselves.
    """

    jobs: Tuple[Job, ...]

    @property
    def name(self) -> str:
        return f"pack[{self.jobs[0].name} +{len(self.jobs) - 1}]" if len(self.jobs) > 1 else self.jobs[0].name

    def __call__(self) -> Dict[str, Any]:
        import traceback

        done, errors = [], []
        for job in self.jobs:
            try:
                done.append(job())
            except Exception as exc:  # noqa: BLE001 - reported per member below, with its traceback in the log
                traceback.print_exc()
                errors.append(f"{job.name}: {type(exc).__name__}: {exc}".replace("\n", " "))
        if errors:
            raise RuntimeError(f"{len(errors)} of {len(self.jobs)} packed job(s) failed:\n" + "\n".join(errors))
        return {"job": self.name, "members": done}

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self)


def member_error(detail: str, job_name: str) -> str:
    """The line of a pack's error that concerns ``job_name`` (the whole text when there is none)."""
    for line in detail.splitlines():
        if line.startswith(f"{job_name}: "):
            return line[len(job_name) + 2:]
    return detail


def _write_io(args: Tuple[str, ...], config: str, eval_kind: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    from ffcv_ssl.cli import build_parser

    ns, _ = build_parser().parse_known_args(["write", *args])
    parts = [re.sub(r":[0-9]+[kKmM]?$", "", p) for p in (ns.part or [])]     # FILE:N -> FILE
    roots = [ns.root] if ns.root else []
    return tuple(parts + roots), (str(ns.out),)


def _pretrain_io(args: Tuple[str, ...], config: str, eval_kind: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    from ffcv_ssl.config import load_config
    from ffcv_ssl.train.config import TrainConfig

    cfg = load_config(TrainConfig, config or None, args)
    inputs = [cfg.data.train] + ([cfg.data.val] if cfg.data.val else [])
    if cfg.init_from:
        inputs.append(_backbone_file(cfg.init_from))
    out = Path(cfg.out_dir)
    return tuple(inputs), (str(out / "summary.json"), str(out / "backbone.pth"))


def _backbone_file(spec: str) -> str:
    if spec == "random":
        return ""
    p = Path(spec)
    return str(p / "backbone.pth") if p.suffix != ".pth" else str(p)


def _eval_io(args: Tuple[str, ...], config: str, eval_kind: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    from ffcv_ssl.config import load_config
    from dataset_writers.subsets import budget_name, parse_budget
    from ffcv_ssl.evaluation.config import EvalConfig
    from ffcv_ssl.evaluation.kinds import EVALUATIONS

    EVALUATIONS.check(eval_kind, key="eval_kind")
    cfg = load_config(EvalConfig, config or None, args)
    inputs = [cfg.train, cfg.test]
    if eval_kind != "scratch":
        inputs += [_backbone_file(c) for c in [cfg.checkpoint, *cfg.concat_with]]
    kind = "linear" if eval_kind == "concat" else eval_kind
    level = "" if cfg.label_level == "label" else f"-{cfg.label_level}"
    outputs = [str(Path(cfg.out_dir) / f"{kind}-{budget_name(parse_budget(b))}{level}" / "results.json")
               for b in cfg.budgets]
    return tuple(i for i in inputs if i), tuple(outputs)


JOB_KINDS: Dict[str, Tuple[type, Callable]] = {
    "write": (Job, _write_io),
    "pretrain": (PretrainJob, _pretrain_io),
    "eval": (Job, _eval_io),
}


def make_job(kind: str, *, name: str, stage: str, args: Tuple[str, ...], config: str, eval_kind: str) -> Job:
    """Build the job, resolving its inputs/outputs by loading its config (a bad key fails here, before submit)."""
    cls, io = JOB_KINDS[kind]
    inputs, outputs = io(args, config, eval_kind)
    return cls(name=name, stage=stage, kind=kind, args=tuple(args), config=config, eval_kind=eval_kind,
               inputs=inputs, outputs=outputs)
