"""Optimisers against their formulas: LARS trust ratio and exclusions, lr scaling, warm-up + cosine, resume."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ffcv_ssl.config import load_config
from ffcv_ssl.errors import ConfigError
from ffcv_ssl.optim import OptimConfig, WarmupCosine, build_optimizer, lr_schedule, param_groups, scaled_lr


class _Tiny(nn.Module):
    """A conv weight (4-D), a linear weight (2-D), biases and a BN (1-D), plus a frozen weight."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 4)
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)


def _set_grads(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn(p.shape, generator=g)


def _lars_reference(w, g, buf, *, lr, wd, eta, momentum, adapt):
    """One LARS step (apex LARC / timm form): returns (new w, new momentum buffer)."""
    if adapt:
        w_norm, g_norm = float(w.norm()), float(g.norm())
        trust = eta * w_norm / (g_norm + wd * w_norm + 1e-8) if w_norm > 0 and g_norm > 0 else 1.0
        d = (g + wd * w) * trust
    else:
        d = g.clone()
    buf = d.clone() if buf is None else momentum * buf + d
    return w - lr * buf, buf


@pytest.mark.parametrize("weight_decay", [1e-6, 0.1, 0.0])
def test_lars_two_steps_equal_the_formula(weight_decay):
    model = _Tiny()
    cfg = OptimConfig(name="lars", lr=0.3, lr_scaling="linear", momentum=0.9, weight_decay=weight_decay,
                      trust_coefficient=0.001)
    opt = build_optimizer(model, cfg, batch_size=512)  # lr = 0.3 * 512 / 256 = 0.6
    lr = 0.6
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    ref = {n: p.detach().clone() for n, p in trainable.items()}
    bufs = {n: None for n in trainable}
    for seed in (1, 2):
        _set_grads(model, seed)
        grads = {n: p.grad.clone() for n, p in trainable.items()}
        opt.step()
        for n in trainable:
            adapt = trainable[n].ndim > 1  # weights: always (even with wd 0); BN and bias: never
            wd = weight_decay if adapt else 0.0
            ref[n], bufs[n] = _lars_reference(ref[n], grads[n], bufs[n], lr=lr, wd=wd, eta=0.001, momentum=0.9,
                                              adapt=adapt)
            torch.testing.assert_close(trainable[n].detach(), ref[n], rtol=1e-6, atol=1e-7, msg=n)


def test_lars_trust_ratio_changes_weights_but_not_bn_and_bias():
    """With eta = 0.001 the adapted update of a weight is tiny; BN and bias take the plain lr * g step."""
    model = _Tiny()
    opt = build_optimizer(model, OptimConfig(name="lars", lr=1.0, lr_scaling="none", weight_decay=0.0), 256)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _set_grads(model, 3)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    opt.step()
    after = dict(model.named_parameters())
    torch.testing.assert_close(after["bn.weight"].detach(), before["bn.weight"] - grads["bn.weight"])
    torch.testing.assert_close(after["fc.bias"].detach(), before["fc.bias"] - grads["fc.bias"])
    step = float((after["fc.weight"].detach() - before["fc.weight"]).norm())
    assert step == pytest.approx(0.001 * float(before["fc.weight"].norm()), rel=1e-4)  # ||lr * trust * g|| = eta ||w||
    assert torch.equal(after["frozen.weight"], before["frozen.weight"])


def test_param_groups_exclude_bn_bias_and_frozen():
    model = _Tiny()
    groups = param_groups(model, 1e-6)
    decay = {id(p) for p in groups[0]["params"]}
    no_decay = {id(p) for p in groups[1]["params"]}
    assert decay == {id(model.conv.weight), id(model.fc.weight)}
    assert no_decay == {id(model.bn.weight), id(model.bn.bias), id(model.fc.bias)}
    assert groups[0]["weight_decay"] == 1e-6 and groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["sgd", "adamw", "lars"])
def test_every_optimizer_builds_with_the_same_groups(name):
    model = _Tiny()
    opt = build_optimizer(model, OptimConfig(name=name, weight_decay=1e-4), batch_size=256)
    wd = [g["weight_decay"] for g in opt.param_groups]
    assert wd == [1e-4, 0.0]
    assert all(g["lr"] == pytest.approx(0.3) for g in opt.param_groups)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == 5  # the frozen linear is not optimised
    _set_grads(model, 0)
    opt.step()


def test_sgd_step_matches_torch_formula_with_weight_decay_on_weights_only():
    model = _Tiny()
    opt = build_optimizer(model, OptimConfig(name="sgd", lr=0.1, lr_scaling="none", momentum=0.0,
                                             weight_decay=0.5), 256)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _set_grads(model, 4)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    opt.step()
    w = dict(model.named_parameters())
    torch.testing.assert_close(w["fc.weight"].detach(), before["fc.weight"] - 0.1 * (grads["fc.weight"]
                                                                                   + 0.5 * before["fc.weight"]))
    torch.testing.assert_close(w["fc.bias"].detach(), before["fc.bias"] - 0.1 * grads["fc.bias"])


def test_lr_scaling_rules():
    assert scaled_lr(OptimConfig(lr=0.3, lr_scaling="linear"), 4096) == pytest.approx(4.8)
    assert scaled_lr(OptimConfig(lr=0.075, lr_scaling="sqrt"), 4096) == pytest.approx(0.075 * 64)
    assert scaled_lr(OptimConfig(lr=0.5, lr_scaling="none"), 4096) == 0.5


def test_lr_schedule_values():
    base, total, warm = 4.8, 1000, 100
    assert lr_schedule(0, total, warm, base) == 0.0
    assert lr_schedule(50, total, warm, base) == pytest.approx(2.4)
    assert lr_schedule(warm, total, warm, base) == pytest.approx(base)  # end of warm-up: the peak
    assert lr_schedule(550, total, warm, base) == pytest.approx(base / 2)  # middle of the cosine
    assert lr_schedule(325, total, warm, base) == pytest.approx(base * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_schedule(total, total, warm, base) == pytest.approx(0.0, abs=1e-12)
    assert lr_schedule(total, total, warm, base, min_lr=0.01) == pytest.approx(0.01)
    assert lr_schedule(550, total, warm, base, min_lr=0.2) == pytest.approx((base + 0.2) / 2)
    assert lr_schedule(5, 10, 0, 1.0) == pytest.approx(0.5)  # no warm-up


def test_warmup_cosine_sets_groups_and_resumes_exactly():
    model = _Tiny()
    opt = build_optimizer(model, OptimConfig(), 256)
    sched = WarmupCosine(opt, total_steps=20, warmup_steps=4, base_lr=1.0)
    seen = [sched.step() for _ in range(7)]
    assert seen == [lr_schedule(i, 20, 4, 1.0) for i in range(7)]
    assert all(g["lr"] == seen[-1] for g in opt.param_groups)
    assert sched.progress == pytest.approx(7 / 20)
    state = sched.state_dict()
    rest = [sched.step() for _ in range(13)]
    resumed = WarmupCosine(opt, total_steps=20, warmup_steps=4, base_lr=1.0)
    resumed.load_state_dict(state)
    assert [resumed.step() for _ in range(13)] == rest
    assert resumed.progress == 1.0


def test_warmup_cosine_from_config():
    opt = build_optimizer(_Tiny(), OptimConfig(), 256)
    sched = WarmupCosine.from_config(opt, OptimConfig(lr=0.3, epochs=100, warmup_epochs=10), steps_per_epoch=50,
                                     batch_size=4096)
    assert (sched.total_steps, sched.warmup_steps, sched.base_lr) == (5000, 500, pytest.approx(4.8))


def test_bad_optimizer_config_is_one_line():
    with pytest.raises(ConfigError, match="unknown optimizer 'adam'.*lars"):
        load_config(OptimConfig, overrides=["name=adam"])
    with pytest.raises(ConfigError, match="lr_scaling"):
        load_config(OptimConfig, overrides=["lr_scaling=log"])
    with pytest.raises(ConfigError, match="warmup_epochs"):
        load_config(OptimConfig, overrides=["epochs=5", "warmup_epochs=10"])
