"""DDP sharding of ``ViewLoader``: 2 real gloo processes (``torch.multiprocessing.spawn``), a real JPEG beton.

- with ``distributed=True, order='random'`` the two ranks together see every sample exactly once per epoch,
  with a different split and order in the next epoch (ffcv's ``DistributedSampler`` semantics, seeded);
- a sample's views do not depend on which rank loads it: they equal a single-process loader's views of
  that sample (the draw is keyed by seed, epoch and sample id only).
``order='quasi_random'`` under DDP is refused in ``test_loader.py`` (no process group needed for that).
Each process imports torch + ffcv and compiles its loader: ~1 min on 2 cores, hence ``slow``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ddp_support import run_ranks
from loader_support import ID_OFFSET, identity_stats, varied_photos, write_beton

WORLD, N, BATCH, SEED = 2, 32, 4, 3
pytestmark = pytest.mark.slow


def _views():
    from ffcv_ssl.loading import ViewConfig

    return [ViewConfig(count=2, size=16)]


def _epochs(loader, epochs=(0, 1)):
    out = {}
    for e in epochs:
        loader.set_epoch(e)
        ids, views = [], []
        for b in loader:
            ids.append(b.index.clone())
            views.append(torch.stack([v.round().to(torch.uint8) for v in b.views], 1))   # identity stats
        out[e] = (torch.cat(ids), torch.cat(views))
    return out


def _rank_body(rank: int, beton: str) -> dict:
    from ffcv_ssl.loading import ViewLoader

    loader = ViewLoader(beton, _views(), batch_size=BATCH, num_workers=1, order="random", seed=SEED,
                        distributed=True, with_index=True, **identity_stats())
    return {"len": len(loader), "epochs": _epochs(loader)}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp_loader")
    beton = write_beton(d / "photos.beton", varied_photos(N, (40, 90)), "jpg", 96)
    return beton, run_ranks(_rank_body, str(beton), world=WORLD)


def test_two_ranks_cover_every_sample_exactly_once_per_epoch(sharded):
    _, ranks = sharded
    assert [r["len"] for r in ranks] == [N // WORLD // BATCH] * WORLD
    for epoch in (0, 1):
        ids = [r["epochs"][epoch][0] for r in ranks]
        assert all(len(i) == N // WORLD for i in ids)
        assert sorted(torch.cat(ids).tolist()) == list(range(ID_OFFSET, ID_OFFSET + N)), f"epoch {epoch}"
    assert not torch.equal(ranks[0]["epochs"][0][0], ranks[0]["epochs"][1][0])   # reshuffled per epoch


def test_views_do_not_depend_on_the_rank(sharded):
    from ffcv_ssl.loading import ViewLoader

    beton, ranks = sharded
    single = _epochs(ViewLoader(str(beton), _views(), batch_size=BATCH, num_workers=1, order="sequential",
                                seed=SEED, with_index=True, **identity_stats()))
    for epoch in (0, 1):
        ref_ids, ref_views = single[epoch]
        by_id = {int(i): ref_views[k] for k, i in enumerate(ref_ids)}
        for r in ranks:
            ids, views = r["epochs"][epoch]
            for k, i in enumerate(ids.tolist()):
                assert torch.equal(views[k], by_id[i]), f"epoch {epoch}, sample {i}: rank-dependent views"
    assert not np.array_equal(single[0][1].numpy(), single[1][1].numpy())
