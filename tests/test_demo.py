"""The demo's first slice: digits -> real betons (ffcv format) -> real ffcv Loader, round-trip exact."""
import numpy as np
import pytest

from dataset_writers.beton import sha256_file
from dataset_writers.manifest import read_manifest
from dataset_writers.readers.digits import digits_images, split_positions
from ffcv_ssl.demo import DemoConfig, run_demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(DemoConfig(out=str(out), workers=2))


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def test_round_trip_labels_exact_and_pixels_within_jpeg_tolerance(demo_run):
    out, result = demo_run
    images, labels = digits_images(32)
    split = split_positions(labels, 0.2, 0)
    for name in ("train", "test"):
        read = result["reads"][name]
        np.testing.assert_array_equal(read["labels"], labels[split[name]])
        src = images[split[name]]
        assert read["images"].shape == src.shape and read["images"].dtype == np.uint8
        assert psnr(read["images"], src) > 38.0           # JPEG q90 on 32-px digits: ~44 dB
        assert np.abs(read["images"].astype(int) - src).mean() < 2.0


def test_split_is_stratified_and_complete(demo_run):
    _, result = demo_run
    train, test = result["reads"]["train"]["labels"], result["reads"]["test"]["labels"]
    assert len(train) + len(test) == 1797
    frac = np.bincount(test, minlength=10) / (np.bincount(train, minlength=10) + np.bincount(test, minlength=10))
    assert np.all(np.abs(frac - 0.2) < 0.02)


def test_manifest_beside_each_beton_with_matching_checksum(demo_run):
    out, result = demo_run
    for split in ("train", "test"):
        beton = out / "data" / f"digits_{split}.beton"
        manifest = read_manifest(beton)
        assert manifest["sha256"] == sha256_file(beton)
        assert manifest["num_samples"] == len(result["reads"][split]["labels"])
        assert manifest["counts_per_class"] == np.bincount(result["reads"][split]["labels"], minlength=10).tolist()
        assert manifest["label_levels"]["half"]["of_label"] == [0] * 5 + [1] * 5
    leftovers = [p.name for p in (out / "data").iterdir() if p.name.startswith(".")]
    assert leftovers == []
