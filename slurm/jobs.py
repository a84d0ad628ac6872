"""Jobs of a sweep: small frozen descriptions of one ``ffcv-ssl`` invocation (paths and configs, never data).

A job holds its typed config (``WriteConfig``, ``TrainConfig`` or ``EvalConfig``), resolved once when the sweep
is expanded, and runs by calling the library with it (``run_write``, ``pretrain``, ``run_eval``); its command
line (``argv()``) is kept only to show it in plans, failure reports and ``--dry-run``.

submitit pickles one job per array task and unpickles it on the node by import path (this package).
Jobs are idempotent: ``done()`` is true when their outputs exist, and a job that finds its outputs skips
the work, so requeues and re-submitted sweeps are safe. Pretraining jobs are ``Checkpointable``: on
preemption or time limit submitit requeues them, and the engine resumes from the newest checkpoint.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Tuple, Type

import submitit

#: What resolving a job's arguments gives: ``(typed config, inputs, outputs)``.
Resolved = Tuple[Any, Tuple[str, ...], Tuple[str, ...]]


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
    """``ffcv-ssl <kind> ...`` for one point of a sweep's grid; subclasses say how the library runs it.

    Attributes:
        name: ``stage[var=value,...]``, unique in the sweep.
        args: the argv after the subcommand (write) or the key=value overrides (pretrain, eval): for display.
        config: the YAML config file (pretrain, eval; "" for none): for display.
        inputs / outputs: files it needs / produces (absolute or relative to the submit directory).
        cfg: the typed config the job runs with. Left out of the hash (configs are mutable dataclasses), so
            jobs stay hashable; equality still compares it.
    """

    name: str
    stage: str
    kind: str
    args: Tuple[str, ...]
    config: str
    eval_kind: str
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]
    cfg: Any = field(hash=False)

    def done(self) -> bool:
        return bool(self.outputs) and all(Path(o).exists() for o in self.outputs)

    def argv(self) -> Tuple[str, ...]:
        """The equivalent command line (shown in plans and failure reports)."""
        head = {"write": ("write",), "pretrain": ("pretrain", self.config),
                "eval": ("eval", self.eval_kind) + ((self.config,) if self.config else ())}[self.kind]
        return head + self.args

    def run(self, cfg: Any) -> None:
        """Do the work with ``cfg`` (a copy of ``self.cfg``) by calling the library."""
        raise NotImplementedError

    def __call__(self) -> Dict[str, Any]:
        if self.done():
            return {"job": self.name, "skipped": True, "outputs": list(self.outputs)}
        _export_distributed()
        # a copy: the library may fill in the config it is given, and a requeued or packed job must start
        # from the config it was built with, as a fresh command line would
        self.run(copy.deepcopy(self.cfg))
        missing = [o for o in self.outputs if not Path(o).exists()]
        if missing and os.environ.get("RANK", "0") == "0":
            raise RuntimeError(f"{self.name} finished without producing {', '.join(missing)}")
        return {"job": self.name, "skipped": False, "outputs": list(self.outputs)}

    @classmethod
    def resolve(cls, args: Tuple[str, ...], config: str, eval_kind: str) -> Resolved:
        """``(cfg, inputs, outputs)`` of a job of this kind; a bad key or value raises here, before submit."""
        raise NotImplementedError


@dataclass(frozen=True)
class WriteJob(Job):
    """``ffcv-ssl write ...``: ``run_write(WriteConfig)``."""

    def run(self, cfg: Any) -> None:
        from dataset_writers.config import run_write

        run_write(cfg)

    @classmethod
    def resolve(cls, args: Tuple[str, ...], config: str, eval_kind: str) -> Resolved:
        from ffcv_ssl.commands.write import parse_write_argv

        cfg = parse_write_argv(args)
        cfg.validate()
        return cfg, cfg.inputs(), cfg.outputs()


@dataclass(frozen=True)
class PretrainJob(Job, submitit.helpers.Checkpointable):
    """``ffcv-ssl pretrain ...``: requeued on preemption/timeout, resumed from ``out_dir/checkpoints``."""

    def run(self, cfg: Any) -> None:
        from ffcv_ssl.train.engine import pretrain

        pretrain(cfg)

    @classmethod
    def resolve(cls, args: Tuple[str, ...], config: str, eval_kind: str) -> Resolved:
        from ffcv_ssl.config import load_config
        from ffcv_ssl.train.config import TrainConfig

        cfg = load_config(TrainConfig, config or None, args)
        inputs = [cfg.data.train] + ([cfg.data.val] if cfg.data.val else [])
        if cfg.init_from:
            inputs.append(_backbone_file(cfg.init_from))
        out = Path(cfg.out_dir)
        return cfg, tuple(inputs), (str(out / "summary.json"), str(out / "backbone.pth"))

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self)       # the model state is on disk, not in the pickle


@dataclass(frozen=True)
class EvalJob(Job):
    """``ffcv-ssl eval KIND ...``: ``run_eval(eval_kind, EvalConfig)``."""

    def run(self, cfg: Any) -> None:
        from ffcv_ssl.evaluation.runner import run_eval

        run_eval(self.eval_kind, cfg)

    @classmethod
    def resolve(cls, args: Tuple[str, ...], config: str, eval_kind: str) -> Resolved:
        from ffcv_ssl.config import load_config
        from ffcv_ssl.evaluation.config import EvalConfig
        from ffcv_ssl.evaluation.kinds import EVALUATIONS
        from ffcv_ssl.evaluation.runner import results_paths

        EVALUATIONS.check(eval_kind, key="eval_kind")
        cfg = load_config(EvalConfig, config or None, args)
        inputs = [cfg.train, cfg.test]
        if eval_kind != "scratch":
            inputs += [_backbone_file(c) for c in [cfg.checkpoint, *cfg.concat_with]]
        outputs = tuple(str(p) for p in results_paths(eval_kind, cfg))
        return cfg, tuple(i for i in inputs if i), outputs


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


def _backbone_file(spec: str) -> str:
    if spec == "random":
        return ""
    p = Path(spec)
    return str(p / "backbone.pth") if p.suffix != ".pth" else str(p)


#: Stage kind -> its job class (``resolve`` builds the config, ``run`` calls the library).
JOB_KINDS: Dict[str, Type[Job]] = {"write": WriteJob, "pretrain": PretrainJob, "eval": EvalJob}


def make_job(kind: str, *, name: str, stage: str, args: Tuple[str, ...], config: str, eval_kind: str) -> Job:
    """Build the job, resolving its typed config, inputs and outputs (a bad key fails here, before submit)."""
    cls = JOB_KINDS[kind]
    cfg, inputs, outputs = cls.resolve(tuple(args), config, eval_kind)
    return cls(name=name, stage=stage, kind=kind, args=tuple(args), config=config, eval_kind=eval_kind,
               inputs=inputs, outputs=outputs, cfg=cfg)
