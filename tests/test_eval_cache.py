"""Feature cache: streamed writes, memory-mapped reads, reuse and invalidation by hash; concatenated caches."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from ffcv_ssl.errors import UserError
from ffcv_ssl.evaluation.cache import (
    CacheError, FeatureCache, FeatureCacheWriter, cache_dir_for, find_cache, pipeline_tag,
)
from ffcv_ssl.evaluation.concat import ConcatFeatures, concat_caches

PIPELINE = {"resize": 256, "crop": 224, "crop_ratio": 0.875, "normalize": "imagenet", "pool": "avg"}
LEVELS = {"half": {"names": ["0-4", "5-9"], "counts": [0, 0], "of_label": [0] * 5 + [1] * 5}}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def make_data(n: int = 50, width: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, width)).astype(np.float32) * 3
    labels = rng.integers(0, 10, n)
    ids = np.arange(1000, 1000 + n)
    return feats, labels, ids


def write_cache(root, feats, labels, ids, ckpt="ckpt", beton="beton", batch=16, arch="resnet18", pipeline=PIPELINE):
    directory = cache_dir_for(root, sha(ckpt), sha(beton), pipeline_tag(pipeline))
    with FeatureCacheWriter(directory, count=len(feats), width=feats.shape[1], checkpoint_sha256=sha(ckpt),
                            beton_sha256=sha(beton), arch=arch, pipeline=pipeline, level_names=["half"],
                            num_classes=10, class_names=[str(d) for d in range(10)], label_levels=LEVELS) as w:
        for s in range(0, len(feats), batch):
            sl = slice(s, s + batch)
            # torch tensors for features (as extraction produces them), numpy for the rest
            w.add(torch.from_numpy(feats[sl]), labels[sl], ids[sl], levels={"half": (labels[sl] >= 5).astype(int)})
    return w.cache


def test_round_trip_is_memory_mapped_fp16(tmp_path):
    feats, labels, ids = make_data()
    cache = write_cache(tmp_path, feats, labels, ids)
    reopened = FeatureCache.open(cache.directory)
    assert isinstance(reopened.features, np.memmap) and reopened.features.dtype == np.float16
    np.testing.assert_array_equal(reopened.features, feats.astype(np.float16))
    np.testing.assert_array_equal(reopened.labels, labels)
    np.testing.assert_array_equal(reopened.ids, ids)
    np.testing.assert_array_equal(reopened.label_array("half"), (labels >= 5).astype(np.int64))
    m = reopened.manifest
    assert (m["checkpoint_sha256"], m["beton_sha256"]) == (sha("ckpt"), sha("beton"))
    assert (m["arch"], m["width"], m["count"], m["pipeline"]) == ("resnet18", 12, 50, PIPELINE)
    assert reopened.level_names == ["half"] and reopened.num_classes == 10
    # nothing but the cache itself is left in the root (temporary directories are renamed or removed)
    assert [p.name for p in tmp_path.iterdir()] == [cache.directory.name]


def test_reuse_and_invalidation_by_hash(tmp_path):
    feats, labels, ids = make_data()
    cache = write_cache(tmp_path, feats, labels, ids)
    tag = pipeline_tag(PIPELINE)
    found = find_cache(tmp_path, sha("ckpt"), sha("beton"), tag)
    assert found is not None and found.directory == cache.directory
    assert cache.is_valid(sha("ckpt"), sha("beton"), tag)
    # a retrained checkpoint or a rewritten beton: the old cache is not valid and not found
    assert not cache.is_valid(sha("ckpt2"), sha("beton"))
    assert not cache.is_valid(sha("ckpt"), sha("beton2"))
    assert find_cache(tmp_path, sha("ckpt2"), sha("beton"), tag) is None
    assert find_cache(tmp_path, sha("ckpt"), sha("beton2"), tag) is None
    # another eval pipeline (e.g. another crop ratio) is another cache
    other = pipeline_tag({**PIPELINE, "crop_ratio": 1.0})
    assert other != tag and find_cache(tmp_path, sha("ckpt"), sha("beton"), other) is None
    # a manifest that claims other hashes under this directory name is rejected
    manifest = json.loads((cache.directory / "manifest.json").read_text())
    manifest["checkpoint_sha256"] = sha("someone else")
    (cache.directory / "manifest.json").write_text(json.dumps(manifest))
    assert find_cache(tmp_path, sha("ckpt"), sha("beton"), tag) is None


def test_rewrite_replaces_an_existing_cache(tmp_path):
    feats, labels, ids = make_data()
    write_cache(tmp_path, feats, labels, ids)
    cache = write_cache(tmp_path, feats * 2, labels, ids)
    np.testing.assert_array_equal(cache.features, (feats * 2).astype(np.float16))
    assert len(list(tmp_path.iterdir())) == 1


def test_failed_or_incomplete_extraction_leaves_nothing(tmp_path):
    feats, labels, ids = make_data()
    directory = cache_dir_for(tmp_path, sha("c"), sha("b"), "eval")
    kwargs = dict(count=50, width=12, checkpoint_sha256=sha("c"), beton_sha256=sha("b"), arch="resnet18",
                  pipeline=PIPELINE)
    with pytest.raises(RuntimeError):
        with FeatureCacheWriter(directory, **kwargs) as w:
            w.add(feats[:16], labels[:16], ids[:16])
            raise RuntimeError("backbone crashed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CacheError) as exc:
        with FeatureCacheWriter(directory, **kwargs) as w:
            w.add(feats[:16], labels[:16], ids[:16])
    assert "only 16 of 50 rows" in one_line(exc)
    assert list(tmp_path.iterdir()) == []


def test_bad_batches_and_arguments_are_one_line_errors(tmp_path):
    feats, labels, ids = make_data()
    with pytest.raises(CacheError) as exc:
        cache_dir_for(tmp_path, "not-a-hash", sha("b"), "eval")
    assert "sha256" in one_line(exc)
    directory = cache_dir_for(tmp_path, sha("c"), sha("b"), "eval")
    w = FeatureCacheWriter(directory, count=50, width=12, checkpoint_sha256=sha("c"), beton_sha256=sha("b"),
                           arch="resnet18", pipeline=PIPELINE)
    with pytest.raises(CacheError) as exc:
        w.add(feats[:4, :10], labels[:4], ids[:4])
    assert "expected [batch, 12]" in one_line(exc)
    with pytest.raises(CacheError) as exc:
        w.add(np.full((2, 12), 1e6, np.float32), labels[:2], ids[:2])   # overflows float16
    assert "not finite" in one_line(exc)
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_missing_level_and_broken_cache_are_one_line_errors(tmp_path):
    feats, labels, ids = make_data()
    cache = write_cache(tmp_path, feats, labels, ids)
    with pytest.raises(UserError) as exc:
        cache.require_levels(["half", "genus"])
    assert "'genus'" in one_line(exc) and "half" in str(exc.value)
    with pytest.raises(CacheError) as exc:
        FeatureCache.open(tmp_path / "nowhere")
    assert "not a feature cache" in one_line(exc)
    (cache.directory / "manifest.json").write_text(json.dumps({"schema": "something/else"}))
    with pytest.raises(CacheError) as exc:
        FeatureCache.open(cache.directory)
    assert "schema" in one_line(exc)


def test_concatenation_is_lazy_and_row_aligned(tmp_path):
    feats, labels, ids = make_data(width=12)
    other = np.random.default_rng(1).normal(size=(50, 7)).astype(np.float32)
    a = write_cache(tmp_path, feats, labels, ids, ckpt="simclr")
    b = write_cache(tmp_path, other, labels, ids, ckpt="supervised")
    both = concat_caches(a, b)
    assert both.width == a.width + b.width == 19 and both.count == 50
    assert isinstance(both.features, ConcatFeatures)
    expected = np.concatenate([feats.astype(np.float16), other.astype(np.float16)], axis=1)
    rows = np.array([0, 3, 4, 49])
    np.testing.assert_array_equal(both.features[rows], expected[rows])
    np.testing.assert_array_equal(both.features[10:20], expected[10:20])
    np.testing.assert_array_equal(both.label_array("half"), (labels >= 5).astype(np.int64))
    assert [d["width"] for d in both.describe()] == [12, 7]


def test_concatenation_of_different_samples_is_refused(tmp_path):
    feats, labels, ids = make_data()
    a = write_cache(tmp_path, feats, labels, ids, ckpt="a")
    shifted = ids.copy()
    shifted[17] += 1
    b = write_cache(tmp_path, feats, labels, shifted, ckpt="b")
    with pytest.raises(CacheError) as exc:
        concat_caches(a, b)
    assert "sample ids differ (first at row 17" in one_line(exc)
    c = write_cache(tmp_path, feats[:40], labels[:40], ids[:40], ckpt="c")
    with pytest.raises(CacheError) as exc:
        concat_caches(a, c)
    assert "50 vs 40 samples" in one_line(exc)


def test_train_and_test_features_must_come_from_the_same_backbone(tmp_path):
    from ffcv_ssl.evaluation.cache import check_same_representation

    feats, labels, ids = make_data()
    train = write_cache(tmp_path, feats, labels, ids, ckpt="simclr", beton="train")
    test = write_cache(tmp_path, feats, labels, ids, ckpt="simclr", beton="val")
    check_same_representation(train, test)                        # same checkpoint, another beton: fine
    other = write_cache(tmp_path, feats, labels, ids, ckpt="byol", beton="val")
    with pytest.raises(CacheError) as exc:
        check_same_representation(train, other)
    assert "differ in checkpoint_sha256" in one_line(exc)
    cropped = write_cache(tmp_path, feats, labels, ids, ckpt="simclr", beton="val", pipeline={**PIPELINE, "crop": 160})
    with pytest.raises(CacheError) as exc:
        check_same_representation(train, cropped)
    assert "differ in pipeline_tag" in one_line(exc)
    # concatenations are compared part by part
    check_same_representation(concat_caches(train, train), concat_caches(test, test))
    with pytest.raises(CacheError) as exc:
        check_same_representation(concat_caches(train, train), concat_caches(test, other))
    assert "(part 1)" in one_line(exc)
