"""Sweep jobs run the library with typed configs: no command line is re-parsed when a job runs.

A job is built once at sweep expansion (``make_job``: its ``WriteConfig`` / ``TrainConfig`` / ``EvalConfig``,
inputs and outputs), pickled by submitit, and on the node calls ``run_write``, ``pretrain`` or ``run_eval``.
"""
from __future__ import annotations

import ast
import copy
import json
import pickle
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest

from dataset_writers.config import WriteConfig
from ffcv_ssl.errors import UserError
from ffcv_ssl.evaluation.config import EvalConfig
from ffcv_ssl.slurm.jobs import EvalJob, PretrainJob, WriteJob, make_job
from ffcv_ssl.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def _write(name, *args):
    return make_job("write", name=name, stage="write", args=tuple(str(a) for a in args), config="", eval_kind="")


def _digits_write(tmp_path, split, *extra):
    return _write(f"write[{split}]", "digits", "--split", split, "--out", tmp_path / f"digits_{split}.beton",
                  "--max-resolution", "32", "--workers", "1", *extra)


def test_the_jobs_module_never_imports_the_cli():
    """The job must not re-run the command line: ``slurm/jobs.py`` has no ``ffcv_ssl.cli`` / ``build_parser``."""
    tree = ast.parse((REPO / "slurm" / "jobs.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
              {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
            {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not {m for m in modules if m and m.split(".")[-1] == "cli"}, modules
    assert "build_parser" not in names


def test_write_and_eval_jobs_run_in_process_and_write_exactly_their_outputs(tmp_path):
    train = _digits_write(tmp_path, "train", "--subset", "300")
    test = _digits_write(tmp_path, "test")
    assert isinstance(train, WriteJob) and isinstance(train.cfg, WriteConfig) and train.cfg.subset == 300
    assert train.outputs == (str(tmp_path / "digits_train.beton"),) and train.inputs == ()
    for job in (train, test):
        assert job() == {"job": job.name, "skipped": False, "outputs": list(job.outputs)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits_test.beton", "digits_test.manifest.json",
                                                          "digits_train.beton", "digits_train.manifest.json"]
    assert json.loads((tmp_path / "digits_train.manifest.json").read_text())["num_samples"] == 300

    ev = make_job("eval", name="eval[-]", stage="eval", config="", eval_kind="linear", args=(
        "checkpoint=random", "arch=ssl_resnet10_tiny", f"train={train.outputs[0]}", f"test={test.outputs[0]}",
        "budgets=[100,all]", "eval_size=32", "num_workers=1", "linear.max_iter=10", "linear.weight_decays=[1e-3]",
        "label_level=half", f"out_dir={tmp_path / 'eval'}", f"cache_dir={tmp_path / 'features'}"))
    assert isinstance(ev, EvalJob) and isinstance(ev.cfg, EvalConfig)
    assert ev.inputs == (train.outputs[0], test.outputs[0])        # a random backbone reads no file
    assert ev.outputs == (str(tmp_path / "eval" / "linear-100-half" / "results.json"),
                          str(tmp_path / "eval" / "linear-all-half" / "results.json"))
    before = copy.deepcopy(ev.cfg)
    assert ev()["skipped"] is False
    written = sorted(str(p) for p in (tmp_path / "eval").rglob("results.json"))
    assert written == sorted(ev.outputs)                            # what run_eval wrote is what the job names
    assert json.loads(Path(ev.outputs[1]).read_text())["eval"]["label_level"] == "half"
    assert ev.cfg == before                                         # the job ran a copy of its config
    assert ev()["skipped"] is True and train()["skipped"] is True  # idempotent: outputs exist


def test_a_bad_write_stage_fails_when_the_job_is_built(tmp_path):
    """Before any submission, with the CLI's one-line messages."""
    with pytest.raises(UserError, match="--split is required for 'write digits'"):
        _write("w", "digits", "--out", tmp_path / "a.beton")
    with pytest.raises(UserError, match="--root cannot be used with 'write pool'"):
        _write("w", "pool", "--root", tmp_path, "--part", tmp_path / "a.beton:10", "--out", tmp_path / "p.beton")
    with pytest.raises(UserError, match="unrecognized arguments: --no-such-flag"):
        _write("w", "digits", "--split", "train", "--out", tmp_path / "a.beton", "--no-such-flag")
    with pytest.raises(UserError, match="the following arguments are required: --out"):
        _write("w", "digits", "--split", "train")
    pool = _write("w", "pool", "--part", f"{tmp_path / 'a.beton'}:1k", "--part", tmp_path / "b.beton",
                  "--out", tmp_path / "p.beton")
    assert pool.inputs == (str(tmp_path / "a.beton"), str(tmp_path / "b.beton"))       # ':N' is not a file


def _jobs(tmp_path):
    write = _write("w", "digits", "--split", "train", "--out", tmp_path / "a.beton", "size=16")
    pre = make_job("pretrain", name="p", stage="pretrain", config="configs/pretrain/demo_simclr.yaml", eval_kind="",
                   args=(f"data.train={tmp_path / 'a.beton'}", f"out_dir={tmp_path / 'run'}"))
    ev = make_job("eval", name="e", stage="eval", config="configs/eval/linear.yaml", eval_kind="concat",
                  args=(f"checkpoint={tmp_path / 'run'}", f"concat_with=[{tmp_path / 'other'}]", "budgets=[10k]",
                        f"train={tmp_path / 'a.beton'}", f"test={tmp_path / 'a.beton'}", f"out_dir={tmp_path / 'e'}"))
    return write, pre, ev


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_jobs_pickle_with_their_typed_config_and_stay_hashable(tmp_path, monkeypatch, dumps):
    """submitit pickles every job (cloudpickle); the node must get the same config back."""
    monkeypatch.chdir(REPO)                                         # configs/... are repo-relative
    jobs = _jobs(tmp_path)
    for job, cls, schema in zip(jobs, (WriteJob, PretrainJob, EvalJob), (WriteConfig, TrainConfig, EvalConfig)):
        back = pickle.loads(dumps(job))
        assert type(back) is cls and type(back.cfg) is schema
        assert back.cfg == job.cfg and back == job and back.argv() == job.argv()
        assert hash(back) == hash(job) and {job: 1}[back] == 1      # usable as a dict key
    write, pre, ev = jobs
    assert write.cfg.options == ["size=16"]
    assert pre.cfg.data.train == str(tmp_path / "a.beton") and pre.outputs[0] == str(tmp_path / "run" / "summary.json")
    assert ev.inputs[-2:] == (str(tmp_path / "run" / "backbone.pth"), str(tmp_path / "other" / "backbone.pth"))
    assert ev.outputs == (str(tmp_path / "e" / "linear-10k" / "results.json"),)    # concat files as linear
    assert ev.argv() == ("eval", "concat", "configs/eval/linear.yaml", *ev.args)


def test_an_unpickled_write_job_runs_without_the_command_line(tmp_path):
    """What the node does: unpickle the job and call it; neither the CLI nor its commands are imported."""
    job = _digits_write(tmp_path, "test")
    (tmp_path / "job.pkl").write_bytes(cloudpickle.dumps(job))
    code = ("import pickle, sys; job = pickle.load(open(sys.argv[1], 'rb')); print(job()['skipped']); "
            "print(sorted(m for m in sys.modules if m == 'ffcv_ssl.cli' or m.startswith('ffcv_ssl.commands')))")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "job.pkl")], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-2:] == ["False", "[]"]
    assert job.done()
