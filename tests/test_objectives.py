"""Objectives: losses against brute-force loops, wiring of each objective, EMA and queue updates, registry errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ffcv_ssl.config import load_config
from ffcv_ssl.errors import ConfigError, UserError
from ffcv_ssl.models import ModelConfig, build_backbone
from ffcv_ssl.objectives import OBJECTIVES, ObjectiveConfig, build_objective
from ffcv_ssl.objectives.base import ema_update, momentum_at
from ffcv_ssl.objectives.losses import byol_regression, moco_infonce, nt_xent

ARCH = "resnet10t"  # 4.9 M parameters: a real timm ResNet that runs a 32 px step in well under a second


def tiny_objective_config(name: str) -> ObjectiveConfig:
    """Paper defaults with narrow heads and a short queue, so that every objective steps fast on CPU."""
    cfg = ObjectiveConfig(name=name)
    cfg.simclr.proj_hidden_dim = 64
    cfg.byol.proj_hidden_dim, cfg.byol.pred_hidden_dim, cfg.byol.proj_dim = 64, 64, 32
    cfg.moco.proj_hidden_dim, cfg.moco.queue_size = 64, 32
    return cfg


def tiny_objective(name: str, num_classes: int = 5):
    return build_objective(tiny_objective_config(name), build_backbone(ModelConfig(arch=ARCH)), num_classes)


def random_views(n_views: int = 2, batch: int = 4, size: int = 32, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, size, size, generator=g).contiguous(memory_format=torch.channels_last)
            for _ in range(n_views)]


# ------------------------------------------------------------------------------------------- brute-force losses

def brute_nt_xent(z: np.ndarray, ids: list[int], tau: float, anchors: list[int] | None = None) -> float:
    """NT-Xent by explicit loops over anchors, positives and the denominator (float64)."""
    zn = [[x / math.sqrt(sum(y * y for y in v)) for x in v] for v in z.astype(np.float64).tolist()]
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    anchors = list(range(len(zn))) if anchors is None else anchors
    total = 0.0
    for i in anchors:
        denom = sum(math.exp(dot(zn[i], zn[k]) / tau) for k in range(len(zn)) if k != i)
        positives = [p for p in range(len(zn)) if p != i and ids[p] == ids[i]]
        total += sum(-math.log(math.exp(dot(zn[i], zn[p]) / tau) / denom) for p in positives) / len(positives)
    return total / len(anchors)


def brute_nt_xent_torch(z: torch.Tensor, ids: list[int], tau: float) -> torch.Tensor:
    """The same loops on float64 tensors, for autograd gradients."""
    zn = [row / row.norm() for row in z.double()]
    total = z.new_zeros((), dtype=torch.float64)
    for i in range(len(zn)):
        denom = sum(torch.exp(zn[i] @ zn[k] / tau) for k in range(len(zn)) if k != i)
        positives = [p for p in range(len(zn)) if p != i and ids[p] == ids[i]]
        total = total + sum(-torch.log(torch.exp(zn[i] @ zn[p] / tau) / denom) for p in positives) / len(positives)
    return total / len(zn)


@pytest.mark.parametrize("n_views", [2, 3])
@pytest.mark.parametrize("positives", ["instance", "label"])
def test_nt_xent_equals_brute_force(n_views, positives):
    batch, tau = 6, 0.1
    z = torch.randn(n_views * batch, 16)
    ids = (torch.arange(batch) if positives == "instance" else torch.tensor([0, 1, 0, 2, 1, 3])).repeat(n_views)
    loss, acc = nt_xent(z, ids, tau)
    assert loss.item() == pytest.approx(brute_nt_xent(z.numpy(), ids.tolist(), tau), abs=1e-5)
    assert 0.0 <= acc.item() <= 1.0


def test_nt_xent_gradient_equals_brute_force():
    z = torch.randn(8, 5, requires_grad=True)
    ids = torch.arange(4).repeat(2)
    nt_xent(z, ids, 0.2)[0].backward()
    z64 = z.detach().double().requires_grad_(True)
    brute_nt_xent_torch(z64, ids.tolist(), 0.2).backward()
    torch.testing.assert_close(z.grad.double(), z64.grad, atol=1e-6, rtol=1e-5)


def test_nt_xent_with_gathered_keys_equals_global_loss():
    """Rank r scores its anchors (rows r*N.. of the gathered keys) against all keys: the mean is the global loss."""
    world, n_views, batch, tau = 3, 2, 4, 0.1
    parts = [torch.randn(n_views * batch, 8) for _ in range(world)]
    ids = [(torch.arange(batch) + r * batch).repeat(n_views) for r in range(world)]
    keys, key_ids = torch.cat(parts), torch.cat(ids)
    per_rank = [nt_xent(parts[r], ids[r], tau, keys, key_ids, q_offset=r * len(parts[r]))[0] for r in range(world)]
    expected = brute_nt_xent(keys.numpy(), key_ids.tolist(), tau)
    assert (sum(per_rank) / world).item() == pytest.approx(expected, abs=1e-5)


def test_nt_xent_perfect_alignment_is_lower():
    z = torch.randn(4, 32)
    aligned = nt_xent(torch.cat([z, z]), torch.arange(4).repeat(2), 0.1)[0]
    unrelated = nt_xent(torch.randn(8, 32), torch.arange(4).repeat(2), 0.1)[0]
    assert aligned < unrelated


def test_moco_infonce_equals_brute_force():
    q, k, queue, tau = torch.randn(3, 6), torch.randn(3, 6), F.normalize(torch.randn(5, 6), dim=1), 0.2
    loss, _ = moco_infonce(q, k, queue, tau)
    qn, kn = F.normalize(q, dim=1).double(), F.normalize(k, dim=1).double()
    expected = 0.0
    for i in range(3):
        pos = math.exp(float(qn[i] @ kn[i]) / tau)
        neg = sum(math.exp(float(qn[i] @ queue[j].double()) / tau) for j in range(5))
        expected += -math.log(pos / (pos + neg)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_byol_regression_is_two_minus_two_cosine():
    p, z = torch.randn(4, 7), torch.randn(4, 7)
    expected = np.mean([2 - 2 * float(p[i] @ z[i]) / float(p[i].norm() * z[i].norm()) for i in range(4)])
    assert byol_regression(p, z).item() == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------------------------------------- the objectives

def test_simclr_forward_is_nt_xent_of_its_projections():
    obj = tiny_objective("simclr")
    views = random_views(2, batch=4)
    out = obj(views, torch.zeros(4, dtype=torch.long))
    with torch.no_grad():
        z = obj.projector(obj.backbone(torch.cat(views)))  # one forward over both views, as SimCLR does
    expected = brute_nt_xent(z.numpy(), torch.arange(4).repeat(2).tolist(), 0.1)
    assert out["loss"].item() == pytest.approx(expected, abs=1e-5)


def test_supervised_matches_label_smoothing_formula_over_all_views():
    cfg = tiny_objective_config("supervised")
    cfg.supervised.label_smoothing = 0.1
    obj = build_objective(cfg, build_backbone(ModelConfig(arch=ARCH)), 5).eval()
    views, labels = random_views(2, batch=3), torch.tensor([0, 4, 2])
    loss = obj(views, labels)["loss"].item()
    with torch.no_grad():
        logp = torch.cat([obj.head(obj.backbone(v)) for v in views]).double().log_softmax(1)
    targets = labels.repeat(2)
    eps = 0.1
    rows = [-(1 - eps) * logp[i, targets[i]] - eps * logp[i].mean() for i in range(len(targets))]
    assert loss == pytest.approx(float(sum(rows) / len(rows)), abs=1e-5)


def test_supervised_works_with_one_view():
    obj = tiny_objective("supervised")
    out = obj(random_views(1, batch=4), torch.tensor([0, 1, 2, 3]))
    assert torch.isfinite(out["loss"]) and 0.0 <= out["acc1"].item() <= 1.0


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_backpropagates(name):
    obj = tiny_objective(name)
    out = obj(random_views(2, batch=4), torch.tensor([0, 1, 2, 3]))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    backbone_params = list(obj.backbone.parameters())
    assert all(p.grad is not None for p in backbone_params)
    assert sum(float(p.grad.abs().sum()) for p in backbone_params) > 0.0
    trainable = {id(p) for p in obj.parameters() if p.requires_grad}
    assert all(p.grad is not None for p in obj.parameters() if p.requires_grad)
    frozen = [p for n, p in obj.named_parameters() if n.startswith("target_")]
    assert (len(frozen) > 0) == (name in ("byol", "moco"))
    assert all(not p.requires_grad and p.grad is None and id(p) not in trainable for p in frozen)
    assert isinstance(obj.after_step(0.5), dict)


def test_objective_config_has_a_typed_section_per_registered_objective():
    for name in OBJECTIVES:
        cfg = ObjectiveConfig(name=name)
        section = cfg.section()
        assert section is getattr(cfg, name) and callable(getattr(section, "validate", None))


def test_unknown_objective_is_one_line_before_training():
    with pytest.raises(ConfigError) as err:
        load_config(ObjectiveConfig, overrides=["name=simclrr"])
    assert "did you mean 'simclr'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown objective 'dino'"):
        build_objective(ObjectiveConfig(name="dino"), build_backbone(ModelConfig(arch=ARCH)), 0)


def test_bad_objective_values_are_one_line():
    with pytest.raises(ConfigError, match="objective.moco.temperature"):
        load_config(ObjectiveConfig, overrides=["moco.temperature=0"])
    with pytest.raises(ConfigError, match="queue_sise"):
        load_config(ObjectiveConfig, overrides=["moco.queue_sise=10"])


def test_view_count_and_queue_size_are_checked_before_training():
    moco = tiny_objective("moco")
    with pytest.raises(UserError, match="exactly 2 views"):
        moco.check_setup(num_views=3, global_batch=8)
    with pytest.raises(UserError, match="queue_size=32"):
        moco.check_setup(num_views=2, global_batch=64)
    moco.check_setup(num_views=2, global_batch=32)
    with pytest.raises(UserError, match="at least 2 views"):
        tiny_objective("simclr").check_setup(num_views=1, global_batch=8)
    with pytest.raises(UserError, match="number of classes"):
        tiny_objective("supervised", num_classes=0)


# ----------------------------------------------------------------------------------------- EMA and the queue

def test_momentum_schedules_exact():
    assert momentum_at(0.0, 0.996, 1.0, "cosine") == pytest.approx(0.996, abs=1e-15)
    assert momentum_at(0.5, 0.996, 1.0, "cosine") == pytest.approx(0.998, abs=1e-15)
    assert momentum_at(1.0, 0.996, 1.0, "cosine") == pytest.approx(1.0, abs=1e-15)
    k, big_k = 37, 100  # BYOL's formula, 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2
    assert momentum_at(k / big_k, 0.996, 1.0, "cosine") == pytest.approx(
        1 - (1 - 0.996) * (math.cos(math.pi * k / big_k) + 1) / 2, abs=1e-15)
    assert momentum_at(0.3, 0.999, 1.0, "constant") == 0.999


def test_byol_ema_update_exact():
    obj = tiny_objective("byol")
    with torch.no_grad():  # make online and target differ
        for p in list(obj.backbone.parameters()) + list(obj.projector.parameters()):
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in list(obj.target_backbone.parameters()) + list(obj.target_projector.parameters())]
    online = [p.detach().clone() for p in list(obj.backbone.parameters()) + list(obj.projector.parameters())]
    logged = obj.after_step(0.25)
    tau = 1 - (1 - 0.996) * (math.cos(math.pi * 0.25) + 1) / 2
    assert logged["momentum"] == pytest.approx(tau, abs=1e-15)
    after = list(obj.target_backbone.parameters()) + list(obj.target_projector.parameters())
    for t0, o, t1 in zip(before, online, after):
        torch.testing.assert_close(t1, tau * t0 + (1 - tau) * o, rtol=0, atol=1e-6)
    assert any(not torch.equal(t0, t1) for t0, t1 in zip(before, after))  # the target did move
    online_now = list(obj.backbone.parameters()) + list(obj.projector.parameters())
    assert all(torch.equal(a, b) for a, b in zip(online, online_now))  # the online network is untouched


def test_ema_update_generic_formula():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    expected = [0.9 * pa.detach() + 0.1 * pb.detach() for pa, pb in zip(a.parameters(), b.parameters())]
    ema_update(a, b, 0.9)
    for p, e in zip(a.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=0, atol=1e-7)


def test_moco_queue_pointer_and_content_with_wraparound():
    obj = tiny_objective("moco")  # queue_size 32, key width 128
    start = obj.queue.clone()
    chunks = [F.normalize(torch.randn(12, 128), dim=1) for _ in range(3)]
    obj.enqueue(chunks[0])
    assert int(obj.queue_ptr) == 12
    torch.testing.assert_close(obj.queue[:12], chunks[0], rtol=0, atol=0)
    torch.testing.assert_close(obj.queue[12:], start[12:], rtol=0, atol=0)
    obj.enqueue(chunks[1])
    assert int(obj.queue_ptr) == 24
    obj.enqueue(chunks[2])  # 24 + 12 wraps: rows 24..31 then 0..3
    assert int(obj.queue_ptr) == 4
    torch.testing.assert_close(obj.queue[24:], chunks[2][:8], rtol=0, atol=0)
    torch.testing.assert_close(obj.queue[:4], chunks[2][8:], rtol=0, atol=0)
    torch.testing.assert_close(obj.queue[4:12], chunks[0][4:], rtol=0, atol=0)
    torch.testing.assert_close(obj.queue[12:24], chunks[1], rtol=0, atol=0)


def test_moco_enqueues_the_step_keys_only_after_the_step():
    obj = tiny_objective("moco")
    obj.cfg.shuffle_bn = False  # keys over the whole batch, as computed below; Shuffle BN: test_moco_shuffle_bn.py
    views = random_views(2, batch=4)
    with torch.no_grad():  # keys of view 1 by the (train-mode) key encoder, before any update
        expected = F.normalize(obj.target_projector(obj.target_backbone(views[1])), dim=1)
    queue0 = obj.queue.clone()
    out = obj(views, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(obj.queue, queue0, rtol=0, atol=0)  # the loss used the old queue; no change yet
    out["loss"].backward()
    obj.after_step(0.0)
    assert int(obj.queue_ptr) == 4
    torch.testing.assert_close(obj.queue[:4], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(obj.queue[4:], queue0[4:], rtol=0, atol=0)


def test_simclr_loss_decreases_on_real_photographs():
    """A few SGD steps on two fixed augmented views of real photos (scikit-learn's samples) lower NT-Xent."""
    from sklearn.datasets import load_sample_images

    photos = [torch.from_numpy(im.copy()).permute(2, 0, 1).float() / 255 for im in load_sample_images().images]
    g = torch.Generator().manual_seed(0)
    crops = []
    for _ in range(4):  # 4 images x 2 views = random 96 px crops of the two photos, resized to 32 px
        photo = photos[int(torch.randint(2, (1,), generator=g))]
        pair = []
        for _ in range(2):
            y, x = (int(torch.randint(s - 96, (1,), generator=g)) for s in photo.shape[1:])
            pair.append(F.interpolate(photo[None, :, y:y + 96, x:x + 96], size=32, mode="bilinear"))
        crops.append(pair)
    views = [torch.cat([c[v] for c in crops]).contiguous(memory_format=torch.channels_last) for v in range(2)]
    obj = tiny_objective("simclr")
    opt = torch.optim.SGD(obj.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = obj(views, torch.zeros(4, dtype=torch.long))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5, losses  # single steps are noisy with batch-8 BN


def test_losses_stay_float32_under_bf16_autocast():
    """The engine runs forward passes under bf16 autocast; the softmax over tau-scaled logits must stay fp32."""
    obj = tiny_objective("simclr").eval()  # eval BN: the same function of the input in both runs
    views = random_views(2, batch=4)
    reference = obj(views, torch.zeros(4, dtype=torch.long))["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = obj(views, torch.zeros(4, dtype=torch.long))["loss"]
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(reference.item(), rel=0.05)  # bf16 backbone, fp32 loss


@pytest.mark.gpu
def test_simclr_resnet50_bf16_channels_last_step_on_gpu():
    """GPU check: one ResNet-50 SimCLR step at 224 px, batch 256, bf16 + channels_last (numbers printed)."""
    import time

    from ffcv_ssl.optim import OptimConfig, build_optimizer

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    device = torch.device("cuda")
    obj = build_objective(ObjectiveConfig(name="simclr"), build_backbone(ModelConfig(arch="resnet50")), 0).to(device)
    opt = build_optimizer(obj, OptimConfig(), batch_size=256)
    views = [torch.randn(256, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
             for _ in range(2)]
    labels = torch.zeros(256, dtype=torch.long, device=device)

    def step() -> float:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = obj(views, labels)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        obj.after_step(0.0)
        return loss.item()

    step()  # warm-up (cuDNN autotuning, allocator)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start, n = time.perf_counter(), 5
    losses = [step() for _ in range(n)]
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    print(f"\nresnet50 simclr 224px batch 256 (2 views) bf16 channels_last: {n * 256 / elapsed:.0f} images/s, "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    assert all(math.isfinite(v) for v in losses)
