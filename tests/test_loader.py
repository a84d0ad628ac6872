"""``ViewLoader`` behaviour on a real JPEG beton: determinism, independence, concurrency, clean shutdown, errors.

- the same seed gives bit-identical views per sample across two loaders, worker counts (1 vs 2), batch
  sizes and orders (so the draw cannot depend on batch composition), and across re-iterations;
- another epoch, another seed, another view of the same sample: different pixels;
- labels, label levels and ids stay valid while the caller holds on to earlier batches;
- two loaders iterated together (train + val through ``zip``) give what each gives alone;
- breaking out of an epoch releases ffcv's worker thread;
- bad input is one line (``UserError``/``ConfigError``) before any work.
The 2-process DDP sharding test is in ``test_loader_ddp.py``.
"""
from __future__ import annotations

import threading
import time
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch

from loader_support import ID_OFFSET, drawn_params, identity_stats, varied_photos, write_beton
from ffcv_ssl.errors import ConfigError, UserError
from ffcv_ssl.loading import Batch, DataConfig, ViewConfig, ViewLoader, make_loader
from ffcv_ssl.loading.finish import ViewFinisher
from ffcv_ssl.ops.recipe import expand_views

N = 24
SIMCLR = [ViewConfig(count=2, size=32, solarize_p=0.2)]          # the full SimCLR recipe (+ BYOL's solarize)


@pytest.fixture(scope="module")
def beton(tmp_path_factory):
    return write_beton(tmp_path_factory.mktemp("loader") / "photos.beton", varied_photos(N, (50, 120)), "jpg", 128)


def _loader(beton, **kw) -> ViewLoader:
    args = dict(batch_size=8, num_workers=2, seed=7, order="random", with_index=True, **identity_stats())
    args.update(kw)
    return ViewLoader(str(beton), SIMCLR, **args)


@pytest.fixture(scope="module")
def loaders(beton):
    """a: 2 workers, batch 8, random; b: same seed, 1 worker, batch 3 (8 batches), sequential; c: seed 8."""
    return {"a": _loader(beton),
            "b": _loader(beton, num_workers=1, batch_size=3, order="sequential", drop_last=False),
            "c": _loader(beton, seed=8)}


def per_sample(batches: List[Batch]) -> Dict[int, Tuple[torch.Tensor, ...]]:
    out = {}
    for b in batches:
        for k, i in enumerate(b.index.tolist()):
            assert i not in out, f"sample {i} twice in one epoch"
            out[i] = tuple(v[k] for v in b.views)
    return out


def epoch_of(loader: ViewLoader, epoch: int) -> List[Batch]:
    loader.set_epoch(epoch)
    batches = list(loader)
    assert loader.epoch == epoch + 1
    return batches


@pytest.fixture(scope="module")
def alone(loaders):
    """Epochs 0 and 1 of each loader, iterated on its own (batches held, not copied)."""
    return {(name, e): epoch_of(loaders[name], e) for name in loaders for e in (0, 1)}


def _same(x: Dict[int, tuple], y: Dict[int, tuple]) -> bool:
    return x.keys() == y.keys() and all(all(torch.equal(a, b) for a, b in zip(x[i], y[i])) for i in x)


# ------------------------------------------------------------------------------------------- determinism

def test_same_seed_same_views_across_loaders_workers_batch_sizes_and_orders(alone):
    a, b = per_sample(alone["a", 0]), per_sample(alone["b", 0])
    assert sorted(a) == sorted(b) == list(range(ID_OFFSET, ID_OFFSET + N))
    assert _same(a, b)
    assert _same(per_sample(alone["a", 1]), per_sample(alone["b", 1]))


def test_reiterating_an_epoch_is_identical(loaders, alone):
    again = epoch_of(loaders["a"], 0)
    assert [b.index.tolist() for b in again] == [b.index.tolist() for b in alone["a", 0]]   # the same order too
    assert _same(per_sample(again), per_sample(alone["a", 0]))


def test_epochs_seeds_and_views_differ(alone):
    e0, e1, other_seed = (per_sample(alone[k]) for k in (("a", 0), ("a", 1), ("c", 0)))
    for i in e0:
        for v in range(2):
            assert not torch.equal(e0[i][v], e1[i][v]), f"sample {i} view {v}: same pixels in epochs 0 and 1"
            assert not torch.equal(e0[i][v], other_seed[i][v]), f"sample {i} view {v}: seed 7 == seed 8"
        assert not torch.equal(e0[i][0], e0[i][1]), f"sample {i}: both views identical"
    orders = [torch.cat([b.index for b in alone[k]]).tolist() for k in (("a", 0), ("a", 1), ("c", 0))]
    assert orders[0] != orders[1] and orders[0] != orders[2]


def test_parameter_draw_does_not_depend_on_batch_composition():
    recipes = expand_views(SIMCLR)
    ids = np.array([11, 3, 7, 19, 0])
    hs, ws = np.array([100, 80, 120, 64, 90]), np.array([70, 110, 95, 64, 130])
    pint, pflt = drawn_params(recipes, hs, ws, ids, seed=7, epoch=2)
    for k in range(len(ids)):
        alone_i, alone_f = drawn_params(recipes, hs[k:k + 1], ws[k:k + 1], ids[k:k + 1], seed=7, epoch=2)
        np.testing.assert_array_equal(alone_i[0], pint[k])
        np.testing.assert_array_equal(alone_f[0], pflt[k])
    other_i, _ = drawn_params(recipes, hs, ws, ids, seed=7, epoch=3)
    assert not np.array_equal(other_i, pint)


# ------------------------------------------------------------------------- shapes, labels, held batches

def test_shapes_dtypes_channels_last_and_labels_of_held_batches(alone):
    batches = alone["b", 0]       # 8 batches > ffcv's batches_ahead + 2 = 5 output slots, reused within the epoch
    assert [len(b) for b in batches] == [3] * 8
    for b in batches:
        assert len(b.views) == 2
        for x in b.views:
            assert x.shape == (len(b), 3, 32, 32) and x.dtype == torch.float32
            assert x.is_contiguous(memory_format=torch.channels_last)
            assert float(x.min()) >= 0 and float(x.max()) <= 255
        # held since the epoch ended: ffcv's slots were reused by later batches; ours were copied
        assert torch.equal(b.label, (b.index - ID_OFFSET) % 5)
        assert torch.equal(b.levels["coarse"], b.label // 2)
    assert torch.cat([b.index for b in batches]).tolist() == list(range(ID_OFFSET, ID_OFFSET + N))


def test_finisher_normalises_slices_and_casts_exactly():
    """ViewFinisher against a manual torch computation on a uint8 (B, V, H, W, 3) buffer with two view sizes."""
    g = torch.Generator().manual_seed(0)
    buf = torch.randint(0, 256, (3, 6, 40, 40, 3), dtype=torch.uint8, generator=g)
    sizes = [(40, 40)] * 2 + [(24, 24)] * 4
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for dtype, channels_last in ((torch.float32, True), (torch.bfloat16, True), (torch.float32, False)):
        out = ViewFinisher(sizes, mean, std, dtype, channels_last)(buf)
        for v, (h, w) in enumerate(sizes):
            u = buf[:, v, :h, :w].permute(0, 3, 1, 2).double() / 255
            manual = (u - torch.tensor(mean).double().view(3, 1, 1)) / torch.tensor(std).double().view(3, 1, 1)
            assert out[v].dtype == dtype and out[v].shape == (3, 3, h, w)
            assert out[v].is_contiguous(memory_format=torch.channels_last) == channels_last
            tol = 1e-5 if dtype == torch.float32 else 2e-2
            torch.testing.assert_close(out[v].double(), manual, rtol=tol, atol=tol)
    with pytest.raises(TypeError):
        ViewFinisher(sizes, mean, std)(buf.float())


# -------------------------------------------------------------------------- concurrency and shutdown

def test_two_loaders_iterated_together_give_what_each_gives_alone(loaders, alone, beton):
    """train + val at once (zip): must not abort (numba threading layer), and must not mix their data."""
    val = make_loader(DataConfig(train=str(beton), val=str(beton), batch_size=6, num_workers=1,
                                 **identity_stats()), "val", with_index=True)
    val_alone = per_sample(epoch_of(val, 0))
    loaders["a"].set_epoch(1)
    val.set_epoch(0)
    train_batches, val_batches = [], []
    for tb, vb in zip(loaders["a"], val):
        train_batches.append(tb)
        val_batches.append(vb)
    assert len(train_batches) == 3
    assert _same(per_sample(train_batches), per_sample(alone["a", 1]))
    together = per_sample(val_batches)
    assert together.keys() <= val_alone.keys() and len(together) == 18
    assert all(torch.equal(together[i][0], val_alone[i][0]) for i in together)


def _wait_for_threads(limit: int, deadline_s: float = 10.0) -> int:
    end = time.monotonic() + deadline_s
    while threading.active_count() > limit and time.monotonic() < end:
        time.sleep(0.05)
    return threading.active_count()


def test_breaking_early_releases_the_worker_thread(loaders):
    """8 batches > batches_ahead + 1: a worker left alone would block forever on its full queue."""
    loader = loaders["b"]
    before = _wait_for_threads(threading.active_count())
    names_before = {t.ident for t in threading.enumerate()}
    for _ in loader:
        assert threading.active_count() > before       # ffcv's EpochIterator thread is running
        break
    assert _wait_for_threads(before) == before, [t.name for t in threading.enumerate()
                                                 if t.ident not in names_before]
    it = loader.iterate()
    next(it)
    it.close()                                           # an explicit close of a started epoch
    assert _wait_for_threads(before) == before
    assert loader._live is None


# ------------------------------------------------- ffcv 1.0.2 flips numba's interned uint8[::1] to read-only

def test_building_a_view_loader_leaves_numba_uint8_vectors_writable(beton):
    import numba

    t = numba.uint8[::1]
    assert t.mutable
    ViewLoader(str(beton), SIMCLR, batch_size=4, num_workers=1)
    assert t.mutable and numba.uint8[::1].mutable


@pytest.mark.slow          # one more decoder compile: ~15 s alone, 35-40 s on the shared 2 cores
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")   # numba finalizer noise
def test_view_loader_compiles_after_a_stock_ffcv_loader_broke_the_type(beton, alone):
    """A stock ffcv Loader (bench baselines, other code) built between two of ours must not break the second.

    The first ViewLoaders (``alone``) compiled ``np.empty(n, np.uint8)`` and cached its type; the stock
    Loader then flips that very type object to read-only, and the next decoder compiles against it.
    """
    import numba
    from ffcv.fields.decoders import RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader

    t = numba.uint8[::1]
    try:
        Loader(str(beton), batch_size=4, num_workers=1,
               pipelines={"image": [RandomResizedCropRGBImageDecoder((24, 24))]})
        assert not t.mutable, "ffcv no longer flips uint8[::1]: this test no longer exercises anything"
        loader = ViewLoader(str(beton), [ViewConfig(count=1, size=24)], batch_size=6, num_workers=1, seed=1)
        it = loader.iterate()
        batch = next(it)             # compiles the decoder (JPEG and raw branches) now
        it.close()
        assert batch.views[0].shape == (6, 3, 24, 24)
    finally:
        t.mutable = True             # undo ffcv's damage for the rest of this test process


# -------------------------------------------------------------------------------------------- bad input

def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


def test_missing_beton_is_one_line(tmp_path):
    with pytest.raises(UserError) as exc:
        ViewLoader(str(tmp_path / "nope.beton"), SIMCLR, batch_size=4)
    assert "nope.beton" in _one_line(exc)
    with pytest.raises(UserError) as exc:
        ViewLoader(str(tmp_path), SIMCLR, batch_size=4)
    assert "directory" in _one_line(exc)
    garbage = tmp_path / "garbage.beton"
    garbage.write_bytes(b"not a beton at all" * 100)
    with pytest.raises(UserError) as exc:
        ViewLoader(str(garbage), SIMCLR, batch_size=4)
    assert "garbage.beton" in _one_line(exc)


def test_beton_without_label_field_is_one_line(tmp_path):
    from ffcv.fields import RGBImageField
    from ffcv.writer import DatasetWriter

    class Images:
        def __init__(self):
            self.images = varied_photos(4, (20, 40))

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return (self.images[i],)

    path = tmp_path / "unlabelled.beton"
    DatasetWriter(str(path), {"image": RGBImageField(write_mode="raw")}, num_workers=1).from_indexed_dataset(Images())
    with pytest.raises(UserError) as exc:
        ViewLoader(str(path), SIMCLR, batch_size=2)
    assert "label" in _one_line(exc) and "unlabelled.beton" in _one_line(exc)


@pytest.mark.parametrize("bad,key", [(dict(flip_p=1.5), "flip_p"), (dict(jitter_p=-0.1), "jitter_p"),
                                     (dict(scale=(0.9, 0.2)), "scale"), (dict(jitter=(0.4, 0.4, 0.4, 0.6)), "jitter"),
                                     (dict(ratio=(2.0, 0.5)), "ratio"), (dict(blur_sigma=(2.0, 0.1)), "blur_sigma"),
                                     (dict(count=0), "count"), (dict(crop="middle"), "crop")], ids=str)
def test_impossible_recipe_is_a_one_line_config_error(beton, bad, key):
    with pytest.raises(ConfigError) as exc:
        ViewLoader(str(beton), [ViewConfig(**bad)], batch_size=4)
    assert key in _one_line(exc)
    with pytest.raises(ConfigError):
        DataConfig(train=str(beton), views=[ViewConfig(**bad)]).validate()


def test_batch_larger_than_the_dataset_is_one_line(beton):
    with pytest.raises(UserError) as exc:
        ViewLoader(str(beton), SIMCLR, batch_size=N + 1)
    assert str(N + 1) in _one_line(exc)


def test_quasi_random_under_ddp_is_refused_in_one_line(beton):
    with pytest.raises(UserError) as exc:
        ViewLoader(str(beton), SIMCLR, batch_size=4, order="quasi_random", distributed=True)
    assert "quasi_random" in _one_line(exc)
    with pytest.raises(UserError) as exc:
        ViewLoader(str(beton), SIMCLR, batch_size=4, order="shuffled")
    assert "shuffled" in _one_line(exc)
