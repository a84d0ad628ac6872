"""Pools of betons: sources, per-source label offsets, nested part subsets, bytes copied unchanged."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fixtures.datasets import build_imagenet, build_inat21, read_beton  # noqa: E402

from dataset_writers.beton import sha256_file  # noqa: E402
from dataset_writers.errors import WriterError  # noqa: E402
from dataset_writers.manifest import read_manifest  # noqa: E402
from dataset_writers.pool import PoolPart, parse_part, write_pool  # noqa: E402
from dataset_writers.subsets import nested_subset  # noqa: E402
from dataset_writers.write import ImageOptions, write_dataset  # noqa: E402

OPTS = ImageOptions(page_size=1 << 21)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    base = tmp_path_factory.mktemp("pool")
    imagenet = build_imagenet(base / "imagenet", "kaggle")
    inat = build_inat21(base / "inat21")
    out = {"imagenet": base / "imagenet_val.beton", "inat21": base / "inat21_val.beton"}
    write_dataset("imagenet", imagenet.root, "val", out["imagenet"], image=OPTS, workers=0)
    write_dataset("inat21", inat.root, "val", out["inat21"], image=OPTS, workers=0)
    return out


def stored_bytes(path: Path):
    """Every sample's stored image bytes, straight from the file (ffcv's Reader gives the pointers)."""
    from ffcv.reader import Reader

    r = Reader(str(path))
    meta = r.metadata[f"f{r.field_names.index('image')}"]
    table = r.alloc_table
    size = dict(zip(table["ptr"].tolist(), table["size"].tolist()))
    data = path.read_bytes()
    return [data[p: p + size[p]] for p in meta["data_ptr"].tolist()]


def test_pool_sources_label_offsets_and_unchanged_bytes(parts, tmp_path):
    out = tmp_path / "pool.beton"
    m = write_pool([f"{parts['imagenet']}:6", parts["inat21"]], out, seed=3)
    got = read_beton(out, ints=("label", "source", "index"))
    ref = {k: read_beton(p) for k, p in parts.items()}
    sel = nested_subset(ref["imagenet"]["label"], 6, 3)
    np.testing.assert_array_equal(got["source"], [0] * 6 + [1] * 12)
    expected_labels = np.concatenate([ref["imagenet"]["label"][sel], ref["inat21"]["label"] + 5])
    np.testing.assert_array_equal(got["label"], expected_labels)
    np.testing.assert_array_equal(got["index"], np.concatenate([ref["imagenet"]["index"][sel], ref["inat21"]["index"]]))
    # pixels: the stored bytes are copied, so the decoded images are identical, not merely close
    np.testing.assert_array_equal(got["image"], np.concatenate([ref["imagenet"]["image"][sel], ref["inat21"]["image"]]))
    part_bytes = [stored_bytes(parts["imagenet"])[i] for i in sel] + stored_bytes(parts["inat21"])
    assert stored_bytes(out) == part_bytes

    assert m.sha256 == sha256_file(out) == read_manifest(out).sha256
    assert m.num_classes == 11 and len(m.class_names) == 11
    src = m.sources
    assert [s.label_offset for s in src] == [0, 5] and [s.num_classes for s in src] == [5, 6]
    assert [s.dataset for s in src] == ["imagenet", "inat21"] and [s.num_samples for s in src] == [6, 12]
    for s, key in zip(src, ("imagenet", "inat21")):
        assert s.sha256 == sha256_file(parts[key])
        assert s.class_names == read_manifest(parts[key]).class_names
    assert src[0].subset.n == 6 and src[0].subset.seed == 3 and src[1].subset is None
    assert m.class_names[5] == "inat21:Lumbricus terrestris"
    assert m.counts_per_class == np.bincount(got["label"], minlength=11).tolist()


def test_pool_is_deterministic_nested_and_matches_write_subset(parts, tmp_path):
    a = write_pool([f"{parts['inat21']}:4", f"{parts['imagenet']}:3"], tmp_path / "a.beton", seed=1)
    b = write_pool([f"{parts['inat21']}:4", f"{parts['imagenet']}:3"], tmp_path / "b.beton", seed=1)
    assert a.sha256 == b.sha256
    big = write_pool([f"{parts['inat21']}:8"], tmp_path / "big.beton", seed=1)
    small_ids = set(read_beton(tmp_path / "a.beton", ints=("source", "index"), image=False)["index"][:4].tolist())
    assert small_ids < set(big.ids.values)
    # a part taken from the full-split beton is the same subset 'write --subset' picks from the dataset
    inat_root = parts["inat21"].parent / "inat21"
    direct = write_dataset("inat21", inat_root, "val", tmp_path / "direct.beton", subset=8, seed=1, image=OPTS,
                           workers=0)
    assert direct.ids.values == big.ids.values


def test_parse_part_specs():
    assert parse_part("d/x.beton:250k") == PoolPart(Path("d/x.beton"), 250_000)
    assert parse_part("d/x.beton:1M") == PoolPart(Path("d/x.beton"), 1_000_000)
    assert parse_part("d/x.beton:12") == PoolPart(Path("d/x.beton"), 12)
    assert parse_part("d/x.beton") == PoolPart(Path("d/x.beton"), None)
    assert parse_part("/mnt/a:b/x.beton") == PoolPart(Path("/mnt/a:b/x.beton"), None)


def test_pool_bad_parts_leave_nothing(parts, tmp_path):
    out = tmp_path / "pool.beton"
    lonely = tmp_path / "lonely.beton"
    shutil.copy(parts["inat21"], lonely)   # a beton without its manifest
    with pytest.raises(WriterError, match=r"lonely.beton: no manifest beside it"):
        write_pool([lonely], out)
    with pytest.raises(WriterError, match=r":500: asks for 500 samples but the beton holds 12"):
        write_pool([f"{parts['inat21']}:500"], out)
    with pytest.raises(WriterError, match=r"--part .*missing.beton does not exist; give the path of a .beton"):
        write_pool([tmp_path / "missing.beton"], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lonely.beton"]
