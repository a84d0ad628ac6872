"""Faults of a run, through the real ``ffcv-ssl`` CLI in a subprocess.

- OS errors (a full disk while saving a checkpoint, a read-only or impossible out_dir) are one line naming
  the path and a fix, exit 2, and the checkpoint directory stays whole; ``--debug`` keeps the traceback.
- A stopped run resumed with another beton and batch size is refused with the list of differences; with
  ``resume_with_changes=true`` it goes on and the provenance records both settings per step range.
- A beton without a manifest pretrains with an explicit warning.

Full disks and read-only mounts are real tmpfs mounts (root only; skipped with the reason otherwise).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_writers.write import ImageOptions, write_split

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "simclr_rn50.yaml"
TINY = ["data.num_workers=2", "data.views.0.size=32", "data.views.0.blur_p=0.0", "model.arch=ssl_resnet10_tiny",
        "model.sync_bn=false", "objective.simclr.temperature=0.2", "objective.simclr.proj_layers=2",
        "objective.simclr.proj_hidden_dim=128", "optim.lr=0.5", "optim.epochs=1", "optim.warmup_epochs=0",
        "log_every=1", "tensorboard=false"]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400", "FFCV_SSL_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-m", "ffcv_ssl", *args], capture_output=True, text=True, env=env,
                          timeout=900)


def pretrain_cli(beton: Path, out_dir: Path, *overrides: str, debug: bool = False) -> subprocess.CompletedProcess:
    head = ["--debug"] if debug else []
    return cli(*head, "pretrain", str(CONFIG), f"data.train={beton}", "data.batch_size=64", *TINY,
               f"out_dir={out_dir}", *overrides)


def error_lines(res: subprocess.CompletedProcess) -> list:
    return [line for line in res.stderr.splitlines() if line.strip()]


def one_error_line(res: subprocess.CompletedProcess) -> str:
    lines = error_lines(res)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def betons(tmp_path_factory):
    from dataset_writers.registry import get_reader

    spec = get_reader("digits")
    base = tmp_path_factory.mktemp("faults_run")
    out = {}
    for split in ("test", "train"):          # 359 and 1438 images of 10 classes
        out[split] = base / f"digits_{split}.beton"
        write_split(spec.read(None, split, spec.options()), out[split],
                    image=ImageOptions(max_resolution=32, page_size=1 << 21), workers=0)
    return out


# ----------------------------------------------------------------------------------- OS errors (16.3)

def test_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_older_checkpoint(betons, mount_tmpfs):
    """A 4 MiB disk holds one ~2.9 MB checkpoint but not a second: the second save fails with one line,
    the first stays loadable, and no temporary or partial file is left."""
    disk = mount_tmpfs("size=4m")
    out = disk / "run"
    res = pretrain_cli(betons["test"], out, "checkpoint_every=1", "max_steps=3")
    line = one_error_line(res)
    assert "no space left" in line and "ENOSPC" in line, line
    ckpt_dir = out / "checkpoints"
    assert str(ckpt_dir / "ckpt_000000002.pt") in line, line
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["ckpt_000000001.pt"]
    from ffcv_ssl.checkpoint import read_checkpoint

    assert read_checkpoint(ckpt_dir / "ckpt_000000001.pt")["step"] == 1


def test_any_atomic_write_on_a_full_disk_names_its_file_and_leaves_nothing(mount_tmpfs):
    """config.yaml, metrics, results.json... go through ``atomic_write``: a bare write() error names no file."""
    from ffcv_ssl.errors import os_error_message
    from ffcv_ssl.files import atomic_write_text

    disk = mount_tmpfs("size=64k")
    target = disk / "results.json"
    with pytest.raises(OSError) as err:
        atomic_write_text(target, "x" * (1 << 20))
    assert err.value.filename == str(target)
    assert os_error_message(err.value).startswith(f"'{target}': no space left")
    assert list(disk.iterdir()) == []


def test_read_only_out_dir_is_one_line(betons, mount_tmpfs):
    ro = mount_tmpfs("size=1m,ro")
    res = pretrain_cli(betons["test"], ro / "run", "max_steps=1")
    line = one_error_line(res)
    assert str(ro / "run") in line and "read-only" in line and "EROFS" in line, line


def test_out_dir_under_a_file_is_one_line_and_debug_keeps_the_traceback(betons, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    res = pretrain_cli(betons["test"], blocker / "run", "max_steps=1")
    line = one_error_line(res)
    assert str(blocker / "run") in line and "ENOTDIR" in line, line
    res = pretrain_cli(betons["test"], blocker / "run", "max_steps=1", debug=True)
    assert res.returncode != 0 and "Traceback" in res.stderr and "NotADirectoryError" in res.stderr
    assert blocker.read_text() == "not a directory"


# ----------------------------------------------------------------------------------- resume (16.4)

def test_resume_with_another_beton_and_batch_size_is_refused_unless_asked(betons, tmp_path):
    out = tmp_path / "run"
    first = pretrain_cli(betons["test"], out, "max_steps=2")          # stopped at step 2 of 5
    assert first.returncode == 0, first.stderr[-3000:]
    config_before = (out / "config.yaml").read_bytes()
    ckpt = out / "checkpoints" / "ckpt_000000002.pt"
    ckpt_before = ckpt.read_bytes()

    changed = ("data.batch_size=128", f"data.train={betons['train']}")
    res = cli("pretrain", str(CONFIG), *TINY, f"out_dir={out}", *changed)
    line = one_error_line(res)
    assert str(ckpt) in line and "data.train" in line and "data.batch_size: 64 -> 128" in line, line
    assert "resume_with_changes=true" in line
    assert (out / "config.yaml").read_bytes() == config_before and ckpt.read_bytes() == ckpt_before
    assert not (out / "backbone.pth").exists()

    # operational settings may change freely; asking for the change continues and records both settings
    res = cli("pretrain", str(CONFIG), *TINY, f"out_dir={out}", *changed, "resume_with_changes=true",
              "data.num_workers=1", "log_every=2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming" in res.stderr and "changed settings" in res.stderr
    segments = json.loads((out / "provenance.json").read_text())["segments"]
    assert [(s["start_step"], s["end_step"]) for s in segments] == [(0, 2), (2, None)]
    assert segments[0]["settings"]["data.train"] == str(betons["test"])
    assert segments[1]["settings"]["data.train"] == str(betons["train"])
    assert segments[1]["changes"]["data.batch_size"] == [64, 128]
    meta = json.loads((out / "backbone.pth.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and meta["segments"] == summary["segments"]
    last = summary["step"]
    assert [(s["steps"], s["train_beton"], s["batch_size"]) for s in meta["segments"]] == [
        ([0, 2], str(betons["test"]), 64), ([2, last], str(betons["train"]), 128)]
    assert "data.num_workers" not in segments[1]["changes"] and "log_every" not in segments[1]["changes"]


def test_resume_settings_compare_what_defines_the_run():
    from ffcv_ssl.config import load_config
    from ffcv_ssl.checkpoint import _plain_config
    from ffcv_ssl.train.config import TrainConfig
    from ffcv_ssl.train.resume import differences, run_settings

    def settings(*overrides):
        return run_settings(_plain_config(load_config(TrainConfig, None, ["data.train=a.beton", *overrides])))

    base = settings()
    same = settings("out_dir=elsewhere", "data.num_workers=7", "log_every=3", "max_steps=9", "checkpoint_every=5",
                    "keep_checkpoints=4", "tensorboard=false", "device=cpu", "resume_with_changes=true")
    assert differences(base, same) == []
    changed = settings("seed=1", "optim.lr=0.1", "data.views.0.size=96", "objective.name=byol", "model.arch=resnet18")
    assert {k for k, _, _ in differences(base, changed)} == {
        "seed", "optim.lr", "data.views.0.size", "objective.name", "model.arch"}


# ----------------------------------------------------------------------------------- no manifest (16.7)

def test_a_beton_without_manifest_pretrains_with_a_warning(betons, tmp_path):
    bare = tmp_path / "bare.beton"
    shutil.copyfile(betons["test"], bare)
    res = pretrain_cli(bare, tmp_path / "run", "max_steps=1")
    assert res.returncode == 0, res.stderr[-3000:]
    warnings = [line for line in error_lines(res) if line.startswith("warning:")]
    assert len(warnings) == 1 and str(bare) in warnings[0] and "bare.manifest.json" in warnings[0], res.stderr
    assert "10 classes inferred" in warnings[0]
