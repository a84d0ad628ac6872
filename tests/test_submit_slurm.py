"""Sweeps on the real single-node SLURM cluster: stage dependencies, idempotent re-submission, preemption
with an exact resume, failures reported with their cause; and the one-line errors before any submission."""
import json
import subprocess
import time
from pathlib import Path

import pytest
import torch

from dataset_writers.write import ImageOptions, write_split
from ffcv_ssl.errors import UserError
from ffcv_ssl.slurm.submit import choose_cluster, run_sweep
from ffcv_ssl.slurm.sweep import plan

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from dataset_writers.registry import get_reader

    spec = get_reader("digits")
    d = tmp_path_factory.mktemp("sweep_data")
    for split in ("train", "test"):
        write_split(spec.read(None, split, spec.options()), d / f"digits_{split}.beton",
                    image=ImageOptions(max_resolution=32, page_size=1 << 21), workers=0)
    return d


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)                                  # configs/... paths are repo-relative
    monkeypatch.setenv("PYTHONPATH", str(REPO))              # sbatch exports it: jobs import ffcv_ssl, slurm


def _sweep(tmp_path, digits, budgets="[all]", epochs=1):
    text = f"""
name: t
vars: {{data: {digits}, runs: {tmp_path / 'runs'}}}
stages:
  - name: pretrain
    kind: pretrain
    config: configs/pretrain/demo_simclr.yaml
    args: ["data.train={{data}}/digits_test.beton data.batch_size=64 data.num_workers=1 optim.epochs={epochs}",
           "optim.warmup_epochs=0 out_dir={{runs}}/simclr"]
    resources: {{cpus_per_task: 1, mem_gb: 4, timeout_min: 15}}
  - name: evaluate
    kind: eval
    eval_kind: linear
    args: ["checkpoint={{runs}}/simclr train={{data}}/digits_train.beton test={{data}}/digits_test.beton",
           "budgets={budgets} eval_size=32 num_workers=1 linear.max_iter=30 linear.weight_decays=[1e-3]",
           "out_dir={{runs}}/eval cache_dir={{runs}}/features"]
    resources: {{cpus_per_task: 1, mem_gb: 4, timeout_min: 15}}
"""
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return path


def _sacct_times(job_id):
    out = subprocess.run(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "JobID,Start,End,State"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.strip().splitlines()]
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


@pytest.mark.slurm
def test_stages_run_in_order_and_resubmission_submits_nothing(slurm_cluster, digits, tmp_path, in_repo):
    sweep, stages = plan(_sweep(tmp_path, digits), [])
    report = run_sweep("t", stages, cluster="slurm", folder=tmp_path / "submitit", partition=slurm_cluster.partition)
    assert report.submitted == 2 and not report.failed, report.failed
    result = json.loads((tmp_path / "runs" / "eval" / "linear-all" / "results.json").read_text())
    assert result["pretrain"]["method"] == "simclr" and result["metrics"]["top1"] > 0.3
    # the evaluation array started only after the pretraining array had ended (afterok dependency)
    ids = sorted({p.parent.name.split("_")[0] for p in (tmp_path / "submitit").glob("*/*_submitted.pkl")}, key=int)
    pre, ev = _sacct_times(ids[0]), _sacct_times(ids[1])
    pre_end = max(v[1] for v in pre.values())
    ev_start = min(v[0] for v in ev.values())
    assert ev_start >= pre_end, (pre, ev)
    again = run_sweep("t", plan(_sweep(tmp_path, digits), [])[1], cluster="slurm", folder=tmp_path / "submitit")
    assert again.submitted == 0 and again.skipped == 2


@pytest.mark.slurm
def test_failing_job_reports_its_cause_and_later_stages_do_not_run(slurm_cluster, digits, tmp_path, in_repo):
    sweep, stages = plan(_sweep(tmp_path, digits, budgets="[100000]"), [])   # more labels than the split
    report = run_sweep("t", stages, cluster="slurm", folder=tmp_path / "submitit")
    failed = {o.job: o for o in report.failed}
    assert "evaluate[-]" in failed
    assert "label budget" in failed["evaluate[-]"].detail and "larger than" in failed["evaluate[-]"].detail


@pytest.mark.slurm
@pytest.mark.slow
def test_preempted_pretraining_resumes_and_matches_the_uninterrupted_run(slurm_cluster, digits, tmp_path, in_repo,
                                                                          slurm_executor):
    from ffcv_ssl.config import load_config
    from ffcv_ssl.train.config import TrainConfig
    from ffcv_ssl.train.engine import pretrain
    from ffcv_ssl.slurm.jobs import make_job
    from slurm_support import wait_done

    args = (f"data.train={digits}/digits_train.beton", "data.batch_size=64", "data.num_workers=1", "optim.epochs=6",
            "optim.warmup_epochs=1", "checkpoint_every=4", "log_every=1")
    job = make_job("pretrain", name="p", stage="pretrain", args=args + (f"out_dir={tmp_path / 'pre'}",),
                   config="configs/pretrain/demo_simclr.yaml", eval_kind="")
    slurm_executor.update_parameters(timeout_min=30, cpus_per_task=1)
    sjob = slurm_executor.submit(job)
    ckpts = tmp_path / "pre" / "checkpoints"
    deadline = time.time() + 600
    while not list(ckpts.glob("ckpt_*.pt")) and time.time() < deadline and not sjob.done():
        time.sleep(0.5)
    assert list(ckpts.glob("ckpt_*.pt")), "no checkpoint before the deadline"
    assert not (tmp_path / "pre" / "summary.json").exists(), "finished before it could be preempted"
    sjob._interrupt()                                              # preemption: checkpoint() requeues the job
    wait_done(sjob, 900)
    assert sjob.result()["outputs"]
    logs = "".join(p.read_text() for p in Path(sjob.paths.folder).glob("*.out"))
    assert "resumed from ckpt_" in logs
    # the same run without interruption, in this process (1 thread, like the 1-CPU job)
    pretrain(load_config(TrainConfig, REPO / "configs/pretrain/demo_simclr.yaml",
                         list(args) + [f"out_dir={tmp_path / 'ref'}"]))
    a = torch.load(tmp_path / "pre" / "backbone.pth", weights_only=True)
    b = torch.load(tmp_path / "ref" / "backbone.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(l)["loss"] for l in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(l)["loss"] for l in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    assert la[-1] == lb[-1]


def test_no_cluster_reachable_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))                       # no scontrol anywhere
    with pytest.raises(UserError, match="no SLURM controller answers 'scontrol ping'"):
        choose_cluster("slurm")
    assert choose_cluster(None) == "local"
