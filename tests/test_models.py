"""Backbones: timm models without classifier, channels_last, arch errors, SyncBatchNorm placement, light imports."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from ffcv_ssl.config import load_config
from ffcv_ssl.errors import ConfigError, UserError
from ffcv_ssl.models import ModelConfig, build_backbone, check_arch, maybe_sync_batchnorm


def test_resnet18_gives_pooled_512_features_without_classifier():
    import timm

    model = build_backbone(ModelConfig(arch="resnet18", channels_last=False))
    assert model.num_features == 512
    assert isinstance(model.get_classifier(), nn.Identity)
    x = torch.randn(2, 3, 64, 64)
    out = model.eval()(x)
    assert out.shape == (2, 512)
    reference = timm.create_model("resnet18", num_classes=0).eval()  # same names, same computation
    reference.load_state_dict(model.state_dict())
    torch.testing.assert_close(out, reference(x))


def test_channels_last_weights_and_same_output():
    model = build_backbone(ModelConfig(arch="resnet10t", channels_last=True)).eval()
    assert model.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = build_backbone(ModelConfig(arch="resnet10t", channels_last=False)).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), plain(x), atol=1e-5,
                               rtol=1e-4)


def test_unknown_arch_is_one_line_with_suggestions():
    with pytest.raises(UserError) as err:
        build_backbone(ModelConfig(arch="resnet5O"))
    message = str(err.value)
    assert "unknown backbone 'resnet5O'" in message and "'resnet50'" in message and "\n" not in message
    check_arch("resnet18")  # a valid name passes silently


def test_model_config_loads_and_validates():
    cfg = load_config(ModelConfig, overrides=["arch=resnet18", "sync_bn=false"])
    assert (cfg.arch, cfg.sync_bn, cfg.channels_last) == ("resnet18", False, True)
    with pytest.raises(ConfigError, match="drop_path_rate"):
        load_config(ModelConfig, overrides=["drop_path_rate=1.5"])


def test_sync_batchnorm_only_when_it_can_work():
    model = nn.Sequential(build_backbone(ModelConfig(arch="resnet10t")), nn.BatchNorm1d(512))
    same, note = maybe_sync_batchnorm(model, enabled=True, device="cpu", world_size=2)
    assert same is model and "needs CUDA" in note
    assert maybe_sync_batchnorm(model, enabled=True, device="cuda", world_size=1)[0] is model
    assert maybe_sync_batchnorm(model, enabled=False, device="cuda", world_size=8)[0] is model
    params = {id(p) for p in model.parameters()}
    # Conversion itself is a module swap (no CUDA needed); it runs under DDP on GPUs.
    converted, note = maybe_sync_batchnorm(model, enabled=True, device="cuda", world_size=2)
    assert "SyncBatchNorm over 2" in note
    norms = [m for m in converted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)
    assert {id(p) for p in converted.parameters()} == params  # same Parameter objects: optimizer-safe


def test_config_modules_do_not_import_torch():
    """``ffcv-ssl --help`` and config validation must not pay for torch/timm imports."""
    code = ("import sys; import ffcv_ssl.models, ffcv_ssl.optim, ffcv_ssl.objectives as o; "
            "o.ObjectiveConfig(name='moco').validate(); "
            "bad = [m for m in ('torch', 'timm') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
