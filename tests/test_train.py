"""The pretraining engine on a tiny real-image beton (digits): learning, exact resume, NaN stop, bad config."""
import json
from pathlib import Path

import pytest
import torch

from dataset_writers.write import ImageOptions, write_split
from ffcv_ssl.config import ConfigError, load_config
from ffcv_ssl.errors import UserError
from ffcv_ssl.train.config import TrainConfig
from ffcv_ssl.train.engine import pretrain


@pytest.fixture(scope="module")
def digits_beton(tmp_path_factory):
    from dataset_writers.registry import get_reader

    spec = get_reader("digits")
    index = spec.read(None, "test", spec.options())       # 359 images, 10 classes
    out = tmp_path_factory.mktemp("train") / "digits_test.beton"
    write_split(index, out, image=ImageOptions(max_resolution=32, page_size=1 << 21), workers=0)
    return out


def tiny_cfg(beton, out_dir, *overrides):
    base = [f"data.train={beton}", "data.batch_size=64", "data.num_workers=2", "data.views.0.size=32",
            "data.views.0.blur_p=0.0", "model.arch=ssl_resnet10_tiny", "model.sync_bn=false",
            "objective.simclr.temperature=0.2", "objective.simclr.proj_layers=2", "objective.simclr.proj_hidden_dim=128",
            "optim.lr=0.5", "optim.epochs=2", "optim.warmup_epochs=0", f"out_dir={out_dir}", "log_every=1",
            "tensorboard=false"]
    return load_config(TrainConfig, None, [*base, *overrides])


def backbone_state(out_dir):
    return torch.load(Path(out_dir) / "backbone.pth", map_location="cpu", weights_only=True)


def test_interrupted_and_resumed_run_equals_uninterrupted(digits_beton, tmp_path):
    full = pretrain(tiny_cfg(digits_beton, tmp_path / "full"))
    assert full["finished"] and full["step"] == 10         # 359 // 64 = 5 steps x 2 epochs
    part = pretrain(tiny_cfg(digits_beton, tmp_path / "resumed", "max_steps=3"))   # stops mid-epoch 0
    assert not part["finished"] and part["step"] == 3
    assert not (tmp_path / "resumed" / "backbone.pth").exists()
    rest = pretrain(tiny_cfg(digits_beton, tmp_path / "resumed"))
    assert rest["finished"] and rest["step"] == 10
    a, b = backbone_state(tmp_path / "full"), backbone_state(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    losses = lambda d: [json.loads(l)["loss"] for l in (d / "metrics.jsonl").read_text().splitlines()]
    assert losses(tmp_path / "full") == pytest.approx(losses(tmp_path / "resumed"), abs=0)


def test_thirty_simclr_steps_lower_the_loss(digits_beton, tmp_path):
    pretrain(tiny_cfg(digits_beton, tmp_path, "optim.epochs=6"))
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    first = sum(r["loss"] for r in rows[:5]) / 5
    last = sum(r["loss"] for r in rows[-5:]) / 5
    assert last < first - 0.3, (first, last)
    cfg_saved = (tmp_path / "config.yaml").read_text()
    assert "ssl_resnet10_tiny" in cfg_saved and load_config(TrainConfig, tmp_path / "config.yaml").optim.epochs == 6


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(digits_beton, tmp_path):
    cfg = tiny_cfg(digits_beton, tmp_path, "objective.name=supervised", "data.views.0.count=1", "optim.name=sgd",
                   "optim.lr=1e12", "optim.lr_scaling=none", "checkpoint_every=1")
    with pytest.raises(UserError, match=r"loss is (nan|inf) at step \d+ .* Last good checkpoint: .*ckpt_\d+\.pt"):
        pretrain(cfg)
    assert list((tmp_path / "checkpoints").glob("ckpt_*.pt"))
    assert not (tmp_path / "backbone.pth").exists()


def test_bad_config_fails_before_training(digits_beton, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown objective 'simclrr'.*did you mean 'simclr'"):
        tiny_cfg(digits_beton, tmp_path, "objective.name=simclrr")
    with pytest.raises(UserError, match="does not exist"):
        pretrain(tiny_cfg(tmp_path / "missing.beton", tmp_path / "o"))
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(UserError, match="batch_size"):
        pretrain(tiny_cfg(digits_beton, tmp_path / "o"))
    assert not (tmp_path / "o").exists()
