"""Dataset readers on fixtures in every official layout (built from real photographs), through real betons.

References: the fixture builders' intended labels and pixels (tests/fixtures/datasets.py), brute-force
taxonomy ids, ffcv's own Loader for everything read back, and sha256 of the files.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fixtures.datasets import (GLC_TEST, GLC_TRAIN, IMAGENET_NON_LEAF, IMAGENET_WORDS, INAT_LEVELS,  # noqa: E402
                               INAT_TAXA, build_glc20, build_imagenet, build_inat21,
                               build_places365, glc_region, imagenet_train_id, places_expected_levels, psnr,
                               read_beton, truncate, write_places_hierarchy_flags, write_places_hierarchy_names)

from dataset_writers.beton import sha256_file  # noqa: E402
from dataset_writers.errors import WriterError  # noqa: E402
from dataset_writers.manifest import Skipped, read_manifest  # noqa: E402
from dataset_writers.registry import get_reader  # noqa: E402
from dataset_writers.subsets import nested_subset  # noqa: E402
from dataset_writers.write import ImageOptions, resize_max_side, write_dataset  # noqa: E402
from ffcv_ssl.config import load_config  # noqa: E402

SMALL_PAGES = ImageOptions(max_resolution=384, page_size=1 << 21)   # cap below the 500 px fixtures, JPEG q90
LAYOUTS = ("folders", "kaggle", "devkit")


def index(name, root, split, *overrides):
    spec = get_reader(name)
    return spec.read(root, split, load_config(spec.options, None, list(overrides)))


def assert_pixels_close(got: np.ndarray, intended: np.ndarray, min_psnr: float = 28.0):
    """Within JPEG tolerance of the intended (upright RGB, stored-size) pixels."""
    ref = resize_max_side(intended, 384)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert psnr(got, ref) > min_psnr
    assert np.abs(got.astype(int) - ref).mean() < 6.0   # q90 twice: 1-4; another photo: > 40


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    base = tmp_path_factory.mktemp("imagenet")
    return {layout: build_imagenet(base / layout, layout) for layout in LAYOUTS}


@pytest.fixture(scope="module")
def inat(tmp_path_factory):
    return build_inat21(tmp_path_factory.mktemp("inat21"))


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    fx = build_places365(tmp_path_factory.mktemp("places365"))
    write_places_hierarchy_flags(fx.root / "hierarchy_flags.csv")
    write_places_hierarchy_names(fx.root / "hierarchy_names.csv")
    return fx


@pytest.fixture(scope="module")
def glc(tmp_path_factory):
    base = tmp_path_factory.mktemp("glc20")
    return {p: build_glc20(base / p, p) for p in ("original", "repackaged")}


# ---------------------------------------------------------------------------------------------------
# ImageNet

@pytest.mark.parametrize("layout", LAYOUTS)
def test_imagenet_counts_labels_and_class_names(imagenet, layout):
    fx = imagenet[layout]
    for split, truth in (("train", fx.train), ("val", fx.val)):
        idx = index("imagenet", fx.root, split)
        assert len(idx) == len(truth) and idx.skipped == []
        assert {i: l for i, l in zip(idx.ids.tolist(), idx.labels.tolist())} == \
            {i: fx.label(w) for i, (w, _) in truth.items()}
    assert idx.options["layout"] == layout and idx.options["wnids"] == sorted(IMAGENET_WORDS)
    wnids = sorted(IMAGENET_WORDS)
    expected_names = wnids if layout == "folders" else [IMAGENET_WORDS[w] for w in wnids]
    assert idx.class_names == expected_names
    assert IMAGENET_NON_LEAF[0] not in idx.options["wnids"]          # the devkit's non-leaf synset is skipped
    assert idx.ids.tolist() == sorted(fx.val)                         # val ordered by val number in every layout


def test_imagenet_val_betons_identical_across_the_three_layouts(imagenet, tmp_path):
    digests = {}
    for layout in LAYOUTS:
        out = tmp_path / f"{layout}.beton"
        m = write_dataset("imagenet", imagenet[layout].root, "val", out, image=SMALL_PAGES, workers=0)
        digests[layout] = m.sha256
        assert m.reader_options["layout"] == layout
    assert len(set(digests.values())) == 1
    got = read_beton(tmp_path / "devkit.beton")
    fx = imagenet["devkit"]
    # the devkit's ILSVRC2012_ID of val 1 is 1, yet its label is the sorted-WNID index of n01751748 (3)
    assert got["index"][0] == 1 and got["label"][0] == sorted(IMAGENET_WORDS).index("n01751748") == 3
    assert got["label"].tolist() == [fx.label(fx.val[i][0]) for i in got["index"].tolist()]
    for img, i in zip(got["image"], got["index"].tolist()):
        assert_pixels_close(img, fx.val[i][1])


def test_imagenet_train_quirk_files_become_rgb_through_ffcv_loader(imagenet, tmp_path):
    """PNG named .JPEG, CMYK, grayscale and EXIF-rotated JPEGs: all upright RGB, within JPEG tolerance."""
    fx = imagenet["kaggle"]
    out = tmp_path / "train.beton"
    m = write_dataset("imagenet", fx.root, "train", out, image=SMALL_PAGES, workers=2)
    got = read_beton(out)
    assert sorted(got["index"].tolist()) == sorted(fx.train) and len(got["index"]) == 19
    assert got["label"].tolist() == [fx.label(fx.train[i][0]) for i in got["index"].tolist()]
    for img, i in zip(got["image"], got["index"].tolist()):
        assert_pixels_close(img, fx.train[i][1])
    quirks = [imagenet_train_id(n) for n in ("n02105855_2933.JPEG", "n01739381_1309.JPEG", "n01440764_10027.JPEG",
                                             "n01443537_1000.JPEG")]
    gray = got["image"][got["index"].tolist().index(quirks[2])].astype(int)
    assert np.abs(gray[..., 0] - gray[..., 1]).max() <= 3              # stays gray after JPEG re-encoding
    assert m.sha256 == sha256_file(out) and read_manifest(out).sha256 == m.sha256
    assert m.counts_per_class == np.bincount(got["label"], minlength=5).tolist()
    assert m.image_stats.original_width.min == 500 and m.image_stats.stored_width.max == 384


# ---------------------------------------------------------------------------------------------------
# iNat21

def _taxonomy_ids():
    """Brute force: id of each category at each level = rank of its (kingdom, ..., level) tuple."""
    paths = {lvl: sorted({tuple(t[3: 4 + d]) for t in INAT_TAXA}) for d, lvl in enumerate(INAT_LEVELS)}
    return {lvl: [paths[lvl].index(tuple(t[3: 4 + d])) for t in INAT_TAXA] for d, lvl in enumerate(INAT_LEVELS)}


def test_inat21_counts_labels_taxonomy(inat):
    brute = _taxonomy_ids()
    sizes = {"train": 18, "train_mini": 12, "val": 12}
    for split, n in sizes.items():
        idx = index("inat21", inat.root, split)
        assert len(idx) == n and idx.skipped == []
        assert idx.labels.tolist() == [inat.images[split][i][0] for i in idx.ids.tolist()]
        for lvl in INAT_LEVELS:
            assert idx.levels[lvl].tolist() == [brute[lvl][c] for c in idx.labels.tolist()], lvl
        assert idx.levels["species"].tolist() == idx.labels.tolist()
    assert idx.class_names == [t[0] for t in INAT_TAXA]
    # the two Morus (a bird and a mulberry) are two genera, with the same name
    assert idx.level_names["genus"].count("Morus") == 2 and brute["genus"][1] != brute["genus"][4]
    assert len(idx.level_names["kingdom"]) == 2 and len(idx.level_names["class"]) == 5
    train_ids = set(index("inat21", inat.root, "train").ids.tolist())
    assert set(index("inat21", inat.root, "train_mini").ids.tolist()) <= train_ids
    assert min(idx.ids.tolist()) > max(train_ids)                     # val ids follow the train ids


def test_inat21_levels_are_beton_fields_and_in_the_manifest(inat, tmp_path):
    out = tmp_path / "val.beton"
    m = write_dataset("inat21", inat.root, "val", out, image=SMALL_PAGES, workers=0)
    got = read_beton(out, ints=("label", "index") + INAT_LEVELS + ("species",))
    idx = index("inat21", inat.root, "val")
    for lvl in INAT_LEVELS + ("species",):
        np.testing.assert_array_equal(got[lvl], idx.levels[lvl])
        assert m.label_levels[lvl].names == idx.level_names[lvl]
    assert m.label_levels["kingdom"].of_label == _taxonomy_ids()["kingdom"]
    for img, i in zip(got["image"], got["index"].tolist()):
        assert_pixels_close(img, inat.images["val"][i][1])


# ---------------------------------------------------------------------------------------------------
# Places365

def test_places365_counts_official_labels_and_names(places):
    for split, n in (("train", 15), ("val", 10)):
        idx = index("places365", places.root, split)
        assert len(idx) == n and idx.skipped == []
        rel = idx.source.paths
        assert idx.labels.tolist() == [places.images[split][r][0] for r in rel]
    assert len(idx.class_names) == 72 and idx.class_names[8] == "apartment_building/outdoor"
    assert idx.ids.tolist() == list(range(1, 11))                     # Places365_val_%08d numbers
    assert idx.options["resolution_used"] == "256"


@pytest.mark.parametrize("form", ["flags", "names"])
def test_places365_hierarchy_csv_forms(places, form, tmp_path):
    idx = index("places365", places.root, "val", f"hierarchy=hierarchy_{form}.csv")
    expected = places_expected_levels()
    got = {int(l): (idx.level_names["places3"][a], idx.level_names["places16"][b])
           for l, a, b in zip(idx.labels, idx.levels["places3"], idx.levels["places16"])}
    assert got == {l: expected[l] for l in got} and len(got) == 5
    if form == "flags":   # level ids follow the sheet's columns; bus_station/indoor is flagged twice: first wins
        assert len(idx.level_names["places3"]) == 3 and len(idx.level_names["places16"]) == 16
        assert expected[71] == ("indoor", "transportation (vehicle interiors, stations, etc.)")
        out = tmp_path / "val.beton"
        write_dataset("places365", places.root, "val", out, options=[f"hierarchy=hierarchy_{form}.csv"],
                      image=SMALL_PAGES, workers=0)
        back = read_beton(out, ints=("label", "places3", "places16"))
        np.testing.assert_array_equal(back["places16"], idx.levels["places16"])
        for img, r in zip(back["image"], idx.source.paths):
            assert_pixels_close(img, places.images["val"][r][1])


def test_places365_torchvision_folders_and_large_images(tmp_path):
    fx = build_places365(tmp_path / "tv", train_dir="data_large_standard", val_dir="val_large", size=(683, 512),
                         per_class=(1, 1))
    idx = index("places365", fx.root, "train")
    assert len(idx) == 5 and idx.options["resolution_used"] == "large"
    assert idx.source.root.name == "data_large_standard"
    with pytest.raises(WriterError, match=r"no image folder for train \(looked for data_256/, data_256_standard/\)"):
        index("places365", fx.root, "train", "resolution=256")


# ---------------------------------------------------------------------------------------------------
# GLC20

@pytest.mark.parametrize("packaging", ["original", "repackaged"])
def test_glc20_splits_regions_and_label_rules(glc, packaging):
    fx = glc[packaging]
    splits = {"train": sorted(i for i, (s, _) in GLC_TRAIN.items() if packaging == "original" or s == "train"),
              "test": sorted(GLC_TEST)}
    if packaging == "repackaged":
        splits["val"] = sorted(i for i, (s, _) in GLC_TRAIN.items() if s == "val")
    else:
        with pytest.raises(WriterError, match="no 'subset' column, so there is no val subset"):
            index("glc20", fx.root, "val")
    for split, ids in splits.items():
        centre = index("glc20", fx.root, split)
        assert centre.ids.tolist() == ids and centre.skipped == []
        assert centre.labels.tolist() == [fx.patches[i].centre for i in ids]
        majority = index("glc20", fx.root, split, "label_rule=majority")
        assert majority.labels.tolist() == [fx.patches[i].majority for i in ids]
        assert np.any(centre.labels != majority.labels)
    us = index("glc20", fx.root, "train", "region=us")
    assert us.ids.tolist() == [i for i in splits["train"] if glc_region(i) == "us"]
    species = index("glc20", fx.root, "train", "label_rule=species")
    assert species.labels.tolist() == [GLC_TRAIN[i][1] for i in splits["train"]]
    assert len(species.class_names) == 1461
    names = centre.class_names
    assert len(names) == 34 and (names[1] == "Annual Summer Crops") == (packaging == "repackaged")


@pytest.mark.parametrize("packaging", ["original", "repackaged"])
def test_glc20_rgb_near_ir_altitude_through_ffcv_loader(glc, packaging, tmp_path):
    from PIL import Image

    fx = glc[packaging]
    out = tmp_path / "glc.beton"
    m = write_dataset("glc20", fx.root, "train", out, options=["near_ir=true", "altitude=true"], image=SMALL_PAGES,
                      workers=2)
    got = read_beton(out, arrays=("near_ir", "altitude"))
    assert m.fields["near_ir"] == "NDArrayField" and got["altitude"].dtype == np.int16
    for k, i in enumerate(got["index"].tolist()):
        p = fx.patches[i]
        np.testing.assert_array_equal(got["altitude"][k], p.altitude)
        if packaging == "original":       # .npy bands are exact; RGB is JPEG-encoded once by the writer
            np.testing.assert_array_equal(got["near_ir"][k], p.near_ir)
            assert_pixels_close(got["image"][k], p.rgb, min_psnr=30.0)
        else:                             # near-IR is stored exactly as decoded from its JPEG
            nir_file = fx.files[i].with_name(f"{i}_near_ir.jpg")
            np.testing.assert_array_equal(got["near_ir"][k], np.asarray(Image.open(nir_file).convert("L")))
            assert_pixels_close(got["image"][k], p.rgb)
        assert got["label"][k] == p.centre


# ---------------------------------------------------------------------------------------------------
# Nested subsets

def test_nested_subsets_through_the_writer(inat, tmp_path):
    idx = index("inat21", inat.root, "train")
    ids = {}
    for n in (4, 9, 18):
        m = write_dataset("inat21", inat.root, "train", tmp_path / f"s{n}.beton", subset=n, seed=7,
                          image=SMALL_PAGES, workers=0)
        ids[n] = m.ids.values
        assert m.subset.n == n and m.subset.of == 18 and m.subset.seed == 7
        assert ids[n] == idx.ids[nested_subset(idx.labels, n, 7)].tolist()
    assert set(ids[4]) < set(ids[9]) < set(ids[18])
    again = write_dataset("inat21", inat.root, "train", tmp_path / "again.beton", subset=9, seed=7, image=SMALL_PAGES,
                          workers=0)
    assert again.ids.values == ids[9]
    balanced = write_dataset("inat21", inat.root, "train", tmp_path / "bal.beton", subset=12, seed=7, balanced=True,
                             image=SMALL_PAGES, workers=0)
    assert balanced.counts_per_class == [2] * 6 and balanced.subset.balanced is True


# ---------------------------------------------------------------------------------------------------
# Bad input: one clear message, nothing under the final name

def _nothing_written(out: Path):
    assert not out.exists() and not out.with_name(out.stem + ".manifest.json").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_truncated_jpeg_fails_naming_it_or_is_skipped_and_listed(imagenet, tmp_path):
    root = tmp_path / "in"
    shutil.copytree(imagenet["folders"].root, root)
    bad = root / "train" / "n01443537" / "n01443537_99999.JPEG"
    shutil.copy(root / "train" / "n01440764" / sorted(p.name for p in (root / "train" / "n01440764").iterdir())[0], bad)
    truncate(bad)
    out = tmp_path / "out" / "train.beton"
    with pytest.raises(WriterError, match=rf"{bad}: cannot decode .*nothing was written.*--on-error skip"):
        write_dataset("imagenet", root, "train", out, image=SMALL_PAGES, workers=2)
    _nothing_written(out)
    m = write_dataset("imagenet", root, "train", out, image=SMALL_PAGES, workers=2, on_error="skip")
    assert m.num_samples == 19 and [s.file for s in m.skipped] == [str(bad)]


def test_missing_file_listed_in_annotation(inat, tmp_path):
    root = tmp_path / "inat"
    shutil.copytree(inat.root, root)
    victim = sorted(inat.files["val"])[3]
    missing = root / inat.files["val"][victim].relative_to(inat.root)
    missing.unlink()
    out = tmp_path / "val.beton"
    with pytest.raises(WriterError, match=rf"{missing}: listed in val.json but not found; nothing was written"):
        write_dataset("inat21", root, "val", out, image=SMALL_PAGES, workers=0)
    _nothing_written(out)
    m = write_dataset("inat21", root, "val", out, image=SMALL_PAGES, workers=0, on_error="skip")
    assert m.num_samples == 11 and victim not in m.ids.values
    assert m.skipped == [Skipped(str(missing), "listed in val.json but not found")]


def test_unknown_class_in_annotation(places, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(places.root, root)
    with open(root / "places365_val.txt", "a") as fp:
        fp.write("Places365_val_00000011.jpg 99\n")
    with pytest.raises(WriterError, match=r"places365_val.txt line 11: unknown class 99 .*nothing was written"):
        write_dataset("places365", root, "val", tmp_path / "v.beton", image=SMALL_PAGES, workers=0)
    _nothing_written(tmp_path / "v.beton")


def test_duplicate_ids(inat, imagenet, tmp_path):
    import json

    root = tmp_path / "inat"
    shutil.copytree(inat.root, root)
    data = json.loads((root / "val.json").read_text())
    data["images"].append(dict(data["images"][0]))
    (root / "val.json").write_text(json.dumps(data))
    with pytest.raises(WriterError, match=rf"image {data['images'][0]['id']}: duplicate image id"):
        write_dataset("inat21", root, "val", tmp_path / "v.beton", image=SMALL_PAGES, workers=0)
    _nothing_written(tmp_path / "v.beton")
    # the same val image in two class folders (a botched valprep.sh)
    iroot = tmp_path / "in"
    shutil.copytree(imagenet["folders"].root, iroot)
    src = next((iroot / "val" / "n01440764").iterdir())
    shutil.copy(src, iroot / "val" / "n01443537" / src.name)
    with pytest.raises(WriterError, match=r"duplicate image id \d+ \(also .*ILSVRC2012_val_"):
        write_dataset("imagenet", iroot, "val", tmp_path / "v.beton", image=SMALL_PAGES, workers=0)
    _nothing_written(tmp_path / "v.beton")


def test_empty_split_and_wrong_root(places, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(places.root, root)
    (root / "places365_val.txt").write_text("")
    with pytest.raises(WriterError, match=r"places365/val: the split is empty .*check --root and --split"):
        write_dataset("places365", root, "val", tmp_path / "v.beton", workers=0)
    with pytest.raises(WriterError, match=r"--root .*nowhere does not exist; point it at the folder that holds"):
        write_dataset("inat21", tmp_path / "nowhere", "val", tmp_path / "v.beton", workers=0)
    with pytest.raises(WriterError, match=r"--root .*: no val/ folder .*point --root at the folder that holds"):
        write_dataset("imagenet", tmp_path, "val", tmp_path / "v.beton", workers=0)
    with pytest.raises(WriterError, match=r"no observations_<fr\|us>_<train\|test>.csv or occurrences_"):
        write_dataset("glc20", root, "train", tmp_path / "v.beton", workers=0)
    _nothing_written(tmp_path / "v.beton")


class _StuckImages:
    """Position 40 never finishes decoding: a deadlocked worker."""

    def load(self, pos, draft_max_side=None):
        if pos == 40:
            import time

            time.sleep(3600)
        return np.full((16, 16, 3), pos % 256, dtype=np.uint8)

    def describe(self, pos):
        return f"stuck[{pos}]"


def test_a_stuck_worker_fails_the_write_instead_of_hanging_it(tmp_path):
    import time

    from dataset_writers.beton import EncodeJob, encode_in_order
    from dataset_writers.records import SplitIndex
    from dataset_writers.write import _SampleMaker, beton_fields

    index = SplitIndex("toy", "train", np.arange(100), np.zeros(100), ["a"], _StuckImages())
    maker = _SampleMaker(index, 16, index.labels, 0)
    job = EncodeJob(maker, maker.describe, beton_fields(index, ImageOptions(max_resolution=16)))
    t0 = time.perf_counter()
    with pytest.raises(WriterError, match=r"made no progress for 2 s .*nothing was written"):
        list(encode_in_order(job, np.arange(100), workers=2, chunk=8, stall_timeout=2.0))
    assert time.perf_counter() - t0 < 30
