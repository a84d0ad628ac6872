"""Checkpoints: exact round trip of every state, RNG streams, resume = uninterrupted run, timm-loadable export."""
from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest
import torch

from ffcv_ssl.checkpoint import (capture_rng, check_backbone_file, checkpoint_path, export_backbone,
                                 latest_checkpoint, load_backbone, load_checkpoint, prune_checkpoints,
                                 restore_rng, save_checkpoint)
from ffcv_ssl.errors import UserError
from ffcv_ssl.models import ModelConfig, build_backbone
from ffcv_ssl.optim import OptimConfig, WarmupCosine, build_optimizer
from test_objectives import ARCH, tiny_objective

BATCH = 4


def _draws() -> tuple:
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), torch.randn(2).tolist()


def _train_state(seed: int):
    torch.manual_seed(seed)
    model = tiny_objective("moco")  # has everything: backbone, heads, EMA target, queue + pointer
    opt = build_optimizer(model, OptimConfig(name="lars"), batch_size=BATCH)
    sched = WarmupCosine(opt, total_steps=10, warmup_steps=2, base_lr=0.5)
    return model, opt, sched


def _step(model, opt, sched) -> None:
    """One training step whose inputs come from the torch RNG, so a wrong RNG restore changes the result."""
    views = [torch.rand(BATCH, 3, 32, 32) for _ in range(2)]
    loss = model(views, torch.zeros(BATCH, dtype=torch.long))["loss"]
    opt.zero_grad()
    loss.backward()
    sched.step()
    opt.step()
    model.after_step(sched.progress)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        elif isinstance(a[key], dict):
            _assert_same_state(a[key], b[key])
        else:
            assert a[key] == b[key], key


def test_rng_streams_restore_exactly(tmp_path):
    state = capture_rng()
    first = _draws()
    restore_rng(state)
    assert _draws() == first
    # through a file read with weights_only=True, as the engine does
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    model, _, _ = _train_state(0)
    save_checkpoint(tmp_path / "c.pt", model=model, arch=ARCH, step=0, epoch=0)
    expected = _draws()
    ckpt = load_checkpoint(tmp_path / "c.pt")
    restore_rng(ckpt["rng"], rank=0)
    assert _draws() == expected


def test_round_trip_restores_every_tensor(tmp_path):
    model, opt, sched = _train_state(0)
    _step(model, opt, sched)
    path = save_checkpoint(checkpoint_path(tmp_path, 1), model=model, optimizer=opt, schedule=sched, arch=ARCH,
                           step=1, epoch=0, batch_in_epoch=1, config=OptimConfig(), extra={"best": 0.5})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt_000000001.pt"]  # no temp file left behind
    model2, opt2, sched2 = _train_state(123)
    assert not torch.equal(model2.queue, model.queue)
    ckpt = load_checkpoint(path, model=model2, optimizer=opt2, schedule=sched2, expected_arch=ARCH)
    _assert_same_state(model.state_dict(), model2.state_dict())  # backbone, heads, target, queue, pointer
    _assert_same_state(opt.state_dict(), opt2.state_dict())
    assert sched2.state_dict() == sched.state_dict()
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["extra"]) == (1, 0, 1, {"best": 0.5})
    assert ckpt["config"]["name"] == "lars" and ckpt["arch"] == ARCH


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    model, opt, sched = _train_state(0)
    for _ in range(3):
        _step(model, opt, sched)
    uninterrupted = {k: v.clone() for k, v in model.state_dict().items()}

    model, opt, sched = _train_state(0)
    _step(model, opt, sched)
    save_checkpoint(tmp_path / "mid.pt", model=model, optimizer=opt, schedule=sched, arch=ARCH, step=1, epoch=0)
    torch.manual_seed(999)  # the "new process" consumes different random numbers while building
    model, opt, sched = _train_state(77)
    ckpt = load_checkpoint(tmp_path / "mid.pt", model=model, optimizer=opt, schedule=sched, expected_arch=ARCH)
    restore_rng(ckpt["rng"])
    for _ in range(2):
        _step(model, opt, sched)
    _assert_same_state(uninterrupted, model.state_dict())


def test_latest_and_prune(tmp_path):
    assert latest_checkpoint(tmp_path) is None and latest_checkpoint(tmp_path / "absent") is None
    model = torch.nn.Linear(2, 2)
    for step in (5, 40, 300):
        save_checkpoint(checkpoint_path(tmp_path, step), model=model, arch="x", step=step, epoch=0)
    (tmp_path / ".ckpt_000000900.pt.tmp123").write_bytes(b"partial")  # a crashed save is ignored
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 300)
    removed = prune_checkpoints(tmp_path, keep=2)
    assert removed == [checkpoint_path(tmp_path, 5)]
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 300)


def test_checkpoint_errors_are_one_line(tmp_path):
    model = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path / "a.pt", model=model, arch="resnet18", step=0, epoch=0)
    with pytest.raises(UserError) as err:
        load_checkpoint(tmp_path / "a.pt", expected_arch="resnet50")
    assert "model.arch=resnet18" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(UserError, match="not an ffcv-ssl training checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


def test_exported_backbone_loads_with_timm(tmp_path):
    import timm

    objective = tiny_objective("simclr")  # export the backbone that an objective owns (channels_last weights)
    objective.backbone = build_backbone(ModelConfig(arch="resnet18"))
    with torch.no_grad():
        for p in objective.backbone.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # differ from any fresh initialisation
    path = export_backbone(objective.backbone, tmp_path / "backbone.pth", "resnet18", extra={"step": 7})
    loaded = timm.create_model("resnet18", pretrained=True, num_classes=0,
                               pretrained_cfg_overlay=dict(file=str(path)))
    _assert_same_state(objective.backbone.state_dict(), loaded.state_dict())
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(loaded.eval()(x), objective.backbone.eval()(x))
    meta = json.loads((tmp_path / "backbone.pth.json").read_text())
    assert (meta["arch"], meta["num_features"], meta["step"]) == ("resnet18", 512, 7)
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    _assert_same_state(load_backbone(path, "resnet18").state_dict(), loaded.state_dict())


def test_backbone_arch_mismatch_is_one_line(tmp_path):
    path = export_backbone(build_backbone(ModelConfig(arch="resnet18")), tmp_path / "bb.pth", "resnet18")
    with pytest.raises(UserError, match="is a resnet18, not a resnet34"):
        check_backbone_file(path, "resnet34")
    (tmp_path / "bb.pth.json").unlink()  # without metadata, keys and shapes still tell
    with pytest.raises(UserError) as err:
        load_backbone(path, "resnet34")  # timm itself would load it half-empty (strict=False)
    assert "does not match timm 'resnet34'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="does not match timm 'resnet50'"):
        export_backbone(build_backbone(ModelConfig(arch="resnet18")), tmp_path / "x.pth", "resnet50")
    assert not (tmp_path / "x.pth").exists()


def test_resuming_into_a_different_model_is_one_line(tmp_path):
    save_checkpoint(tmp_path / "a.pt", model=torch.nn.Linear(2, 2), arch="x", step=0, epoch=0)
    with pytest.raises(UserError) as err:
        load_checkpoint(tmp_path / "a.pt", model=torch.nn.Linear(2, 3))
    assert "does not fit the model" in str(err.value) and "\n" not in str(err.value)
