"""MoCo's Shuffle BN: the key encoder's BN statistics are not the query batch's, and keys come back in order.

- one process: the key batch is permuted (torch's default generator) and split into ``shuffle_bn_groups``
  BN groups; hooks on the key encoder's first BN show each group's statistics are those of a shuffled
  sub-batch, not of the query's batch (same images in both views, so without Shuffle BN they would match);
- the unshuffle is exact: with the key encoder in eval mode (per-sample BN) the keys equal a per-sample
  reference in the original order;
- DDP, 2 real gloo processes: each process encodes its shard of the batch shuffled with rank 0's permutation,
  and the keys equal a single-process reference built from that permutation;
- ``model.sync_bn`` leaves the key encoder on per-process BN; the permutations are reproduced by a resumed run.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ddp_support import run_ranks
from ffcv_ssl.config import ConfigError, load_config
from ffcv_ssl.errors import UserError
from ffcv_ssl.models import ModelConfig, build_backbone, maybe_sync_batchnorm
from ffcv_ssl.objectives import ObjectiveConfig, build_objective
from test_objectives import ARCH, tiny_objective_config

BATCH, GROUPS, SIZE = 16, 4, 32


def moco(groups: int = GROUPS, shuffle_bn: bool = True, seed: int = 0):
    cfg = tiny_objective_config("moco")
    cfg.moco.shuffle_bn, cfg.moco.shuffle_bn_groups = shuffle_bn, groups
    torch.manual_seed(seed)
    return build_objective(cfg, build_backbone(ModelConfig(arch=ARCH)), 5)


def photo_batch(n: int = BATCH, seed: int = 0) -> torch.Tensor:
    """``n`` random 64 px crops of scikit-learn's two photographs, resized to 32 px and standardised."""
    from sklearn.datasets import load_sample_images

    photos = [torch.from_numpy(im.copy()).permute(2, 0, 1).float() / 255 for im in load_sample_images().images]
    g = torch.Generator().manual_seed(seed)
    crops = []
    for i in range(n):
        photo = photos[i % 2]
        y, x = (int(torch.randint(s - 64, (1,), generator=g)) for s in photo.shape[1:])
        crops.append(F.interpolate(photo[None, :, y:y + 64, x:x + 64], size=SIZE, mode="bilinear", antialias=True))
    x = torch.cat(crops)
    return ((x - x.mean()) / x.std()).contiguous(memory_format=torch.channels_last)


def first_bn(module: torch.nn.Module) -> torch.nn.Module:
    return next(m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


def record_inputs(bn: torch.nn.Module) -> list:
    """Every input of ``bn`` (one per forward call: one per BN group)."""
    seen: list = []
    bn.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    return seen


def channel_means(x: torch.Tensor) -> torch.Tensor:
    return x.float().mean(dim=(0, 2, 3))


# ------------------------------------------------------------------------------------------ one process

def test_key_bn_statistics_are_those_of_shuffled_sub_batches_not_the_query_batch():
    obj = moco()
    x = photo_batch()
    query_in, key_in = record_inputs(first_bn(obj.backbone)), record_inputs(first_bn(obj.target_backbone))
    torch.manual_seed(123)
    perm = torch.randperm(BATCH)                  # what the objective draws from the default generator
    torch.manual_seed(123)
    obj([x, x.clone()], torch.zeros(BATCH, dtype=torch.long))   # the same images as queries and as keys
    assert len(query_in) == 1 and query_in[0].shape[0] == BATCH
    assert [t.shape[0] for t in key_in] == [BATCH // GROUPS] * GROUPS   # one BN pass per group
    # the per-sample input of the first BN (stem output; the target is still a copy of the online encoder)
    per_sample = query_in[0]
    query_mean = channel_means(per_sample)
    for g, got in enumerate(key_in):
        members = perm[g * (BATCH // GROUPS):(g + 1) * (BATCH // GROUPS)]
        torch.testing.assert_close(got, per_sample[members], rtol=0, atol=1e-5)   # the shuffled sub-batch
        assert (channel_means(got) - query_mean).abs().max() > 1e-2                 # not the query's statistics
    assert sorted(torch.cat([perm[g * 4:(g + 1) * 4] for g in range(GROUPS)]).tolist()) == list(range(BATCH))


def test_without_shuffle_bn_the_key_statistics_are_the_query_batch():
    """The leak Shuffle BN removes: with shuffle_bn=false the key BN sees exactly the query's batch."""
    obj = moco(shuffle_bn=False)
    x = photo_batch()
    query_in, key_in = record_inputs(first_bn(obj.backbone)), record_inputs(first_bn(obj.target_backbone))
    obj([x, x.clone()], torch.zeros(BATCH, dtype=torch.long))
    assert len(key_in) == 1
    torch.testing.assert_close(channel_means(key_in[0]), channel_means(query_in[0]), rtol=0, atol=1e-6)


def test_unshuffle_restores_the_original_order_exactly():
    obj = moco()
    x = photo_batch(seed=1)
    obj.target_backbone.eval(), obj.target_projector.eval()     # per-sample BN: keys independent of grouping
    with torch.no_grad():
        reference = F.normalize(obj.target_projector(obj.target_backbone(x)).float(), dim=1)
    obj([photo_batch(seed=2), x], torch.zeros(BATCH, dtype=torch.long))
    keys = obj._pending[0]
    torch.testing.assert_close(keys, reference, rtol=0, atol=1e-5)
    assert (reference[1:] - reference[:-1]).abs().max() > 1e-3   # distinct keys: a permutation would show


def test_permutations_follow_the_seeded_default_generator():
    obj = moco()
    x, y = photo_batch(seed=3), photo_batch(seed=4)

    def keys(seed: int) -> torch.Tensor:
        obj._pending.clear()
        torch.manual_seed(seed)
        obj([x, y], torch.zeros(BATCH, dtype=torch.long))
        return obj._pending[0]

    a, b, c = keys(7), keys(7), keys(8)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-4                    # another permutation, other BN groups, other keys


def test_shuffle_bn_config_and_small_batches_are_one_line_errors():
    with pytest.raises(ConfigError, match="shuffle_bn_groups"):
        load_config(ObjectiveConfig, overrides=["moco.shuffle_bn_groups=0"])
    with pytest.raises(UserError, match="objective.moco.shuffle_bn needs at least 4") as err:
        moco().check_setup(num_views=2, global_batch=2)
    assert "\n" not in str(err.value)
    moco(shuffle_bn=False).check_setup(num_views=2, global_batch=2)


def test_sync_bn_leaves_the_key_encoder_on_per_process_bn():
    """Global BN in the key encoder would give keys the query's statistics again. The conversion itself
    needs no GPU, so it is checked on CPU with a CUDA device name."""
    sync = torch.nn.SyncBatchNorm
    obj, note = maybe_sync_batchnorm(moco(), True, "cuda", 2)
    assert any(isinstance(m, sync) for m in obj.backbone.modules())
    assert not any(isinstance(m, sync) for m in obj.target_backbone.modules())
    assert "per-process BN in target_backbone" in note
    plain, _ = maybe_sync_batchnorm(moco(shuffle_bn=False), True, "cuda", 2)   # MoCo v3 style: all global
    assert any(isinstance(m, sync) for m in plain.target_backbone.modules())


# ------------------------------------------------------------------------------------ 2 gloo processes

WORLD, LOCAL = 2, 8


def _rank_body(rank: int) -> dict:
    from torch.nn.parallel import DistributedDataParallel as DDP

    obj = moco()                                         # same weights on both ranks (seed 0)
    q_all, k_all = photo_batch(WORLD * LOCAL, seed=5), photo_batch(WORLD * LOCAL, seed=6)
    mine = slice(rank * LOCAL, (rank + 1) * LOCAL)
    model = DDP(obj, forward_sync_buffers=False)
    # 1. key encoder in eval mode (per-sample BN, running statistics untouched): the unshuffle alone shows
    obj.target_backbone.eval(), obj.target_projector.eval()
    torch.manual_seed(200 + rank)
    model([q_all[mine], k_all[mine]], torch.zeros(LOCAL, dtype=torch.long))
    res = {"eval_keys": obj._pending.pop().clone()}
    # 2. train mode: BN statistics of this rank's shard of the shuffled global batch
    obj.target_backbone.train(), obj.target_projector.train()
    key_in = record_inputs(first_bn(obj.target_backbone))
    torch.manual_seed(100 + rank)                        # ranks draw different permutations: rank 0's must win
    model([q_all[mine].contiguous(memory_format=torch.channels_last),
           k_all[mine].contiguous(memory_format=torch.channels_last)], torch.zeros(LOCAL, dtype=torch.long))
    res.update({"keys": obj._pending.pop().clone(), "key_bn_in": key_in[0].clone()})
    return res


@pytest.fixture(scope="module")
def two_processes():
    return run_ranks(_rank_body, world=WORLD)


def test_ddp_keys_are_encoded_on_shards_of_rank0s_permutation(two_processes):
    obj = moco()
    k_all = photo_batch(WORLD * LOCAL, seed=6)
    torch.manual_seed(100)
    perm = torch.randperm(WORLD * LOCAL)
    shards = perm.view(WORLD, LOCAL)
    shard_bn_in = record_inputs(first_bn(obj.target_backbone))
    with torch.no_grad():                                # train-mode BN over each shard, as each rank does
        shuffled = torch.cat([F.normalize(obj.target_projector(obj.target_backbone(k_all[s])), dim=1)
                              for s in shards])
    expected = shuffled[torch.argsort(perm)]
    for rank, res in enumerate(two_processes):
        torch.testing.assert_close(res["keys"], expected, rtol=0, atol=1e-5)   # gathered, original order
        torch.testing.assert_close(res["key_bn_in"], shard_bn_in[rank], rtol=0, atol=1e-5)  # BN saw the shard
        # the shard mixes images of both ranks: its BN statistics are not those of the rank's own batch
        assert set(shards[rank].tolist()) != set(range(rank * LOCAL, (rank + 1) * LOCAL))
    with torch.no_grad():
        plain = F.normalize(obj.target_projector(obj.target_backbone(k_all[:LOCAL])), dim=1)
    assert (expected[:LOCAL] - plain).abs().max() > 1e-3   # per-process BN without the shuffle differs


def test_ddp_unshuffle_restores_every_key_in_rank_order(two_processes):
    obj = moco().eval()
    k_all = photo_batch(WORLD * LOCAL, seed=6)
    with torch.no_grad():
        reference = F.normalize(obj.target_projector(obj.target_backbone(k_all)), dim=1)
    for res in two_processes:
        torch.testing.assert_close(res["eval_keys"], reference, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------ resume

def test_interrupted_and_resumed_moco_run_equals_uninterrupted(tmp_path):
    """The engine seeds and checkpoints torch's default generator: a resumed run draws the same permutations."""
    from dataset_writers.registry import get_reader
    from dataset_writers.write import ImageOptions, write_split
    from ffcv_ssl.train.config import TrainConfig
    from ffcv_ssl.train.engine import pretrain

    spec = get_reader("digits")
    beton = tmp_path / "digits_test.beton"
    write_split(spec.read(None, "test", spec.options()), beton, image=ImageOptions(max_resolution=32,
                page_size=1 << 21), workers=0)

    def cfg(out: Path, *extra: str) -> TrainConfig:
        base = [f"data.train={beton}", "data.batch_size=64", "data.num_workers=2", "data.views.0.size=32",
                "data.views.0.blur_p=0.0", "model.arch=ssl_resnet10_tiny", "model.sync_bn=false",
                "objective.name=moco", "objective.moco.queue_size=256", "objective.moco.proj_hidden_dim=64",
                "optim.name=sgd", "optim.lr=0.05", "optim.epochs=1", "optim.warmup_epochs=0", f"out_dir={out}",
                "log_every=1", "tensorboard=false"]
        return load_config(TrainConfig, None, [*base, *extra])

    full = pretrain(cfg(tmp_path / "full"))
    assert full["finished"] and full["step"] == 5
    assert not pretrain(cfg(tmp_path / "resumed", "max_steps=2"))["finished"]
    assert pretrain(cfg(tmp_path / "resumed"))["finished"]
    a, b = (torch.load(tmp_path / d / "backbone.pth", map_location="cpu", weights_only=True)
            for d in ("full", "resumed"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    losses = lambda d: [json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    assert losses("full") == losses("resumed")
