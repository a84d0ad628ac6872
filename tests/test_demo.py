"""The demo: its betons round-trip through the real Loader, and --quick runs the whole miniature study."""
import json

import numpy as np
import pytest

from dataset_writers.beton import sha256_file
from dataset_writers.manifest import read_manifest
from dataset_writers.readers.digits import digits_images, split_positions
from ffcv_ssl.demo import DemoConfig
from ffcv_ssl.demo.run import write_betons


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo_data")
    return data, write_betons(data, DemoConfig(quick=True, workers=2))


def _read_all(beton):
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption

    loader = Loader(str(beton), batch_size=256, num_workers=1, order=OrderOption.SEQUENTIAL, drop_last=False,
                    pipelines={"image": [SimpleRGBImageDecoder()], "label": [IntDecoder()]})
    images, labels = [], []
    for batch in loader:
        b = dict(zip(loader.pipeline_specs, batch))
        images.append(b["image"].copy())
        labels.append(b["label"][:, 0].copy())
    return np.concatenate(images), np.concatenate(labels)


def psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_betons_round_trip_labels_exact_and_pixels_within_jpeg_tolerance(demo_data):
    data, manifests = demo_data
    images, labels = digits_images(32)
    split = split_positions(labels, 0.2, 0)
    for name, beton in (("train", data / "digits_train_clean.beton"), ("test", data / "digits_test.beton")):
        got_images, got_labels = _read_all(beton)
        np.testing.assert_array_equal(got_labels, labels[split[name]])
        src = images[split[name]]
        assert got_images.shape == src.shape and psnr(got_images, src) > 38.0     # JPEG q90: ~44 dB
        manifest = read_manifest(beton)
        assert manifest.sha256 == sha256_file(beton)
        assert manifest.label_levels["half"].of_label == [0] * 5 + [1] * 5
    assert len(labels[split["train"]]) + len(labels[split["test"]]) == 1797


def test_corrupted_variant_is_recorded_and_equals_the_registry_corruption(demo_data):
    """The downsample8x beton holds exactly what the registry's corruption makes of each clean image (up to
    JPEG), and that is far from the clean image: the variant really is the low-resolution condition."""
    from dataset_writers.corruptions import CorruptionChain

    data, _ = demo_data
    m = read_manifest(data / "digits_train_downsample8x.beton")
    assert [e["name"] for e in m.corruption] == ["downsample"] and m.corruption[0]["params"]["factor"] == 8
    chain = CorruptionChain.from_manifest(m.corruption)
    images, labels = digits_images(32)
    src = images[split_positions(labels, 0.2, 0)["train"]]
    expected = np.stack([chain(img, i) for i, img in enumerate(src)])
    low, _ = _read_all(data / "digits_train_downsample8x.beton")
    assert low.shape == src.shape
    assert psnr(low, expected) > 38.0                        # the written pixels are the corruption's (JPEG q90)
    assert psnr(low, src) < psnr(low, expected) - 15.0       # ... and far from the clean pixels


@pytest.mark.slow
def test_quick_demo_runs_the_study_end_to_end(tmp_path):
    from ffcv_ssl.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "cluster=local"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["simclr_minus_random"] > 0.2                 # SimCLR features clearly beat a random backbone
    assert summary["worst_corruption_for_simclr"] == "downsample8x"
    report = (out / "report" / "report.md").read_text()
    for section in ("Fig. 2", "Fig. 3", "Fig. 4", "Fig. 5", "Problems"):
        assert section in report, section
    pngs = list((out / "report").glob("*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs)
    # a second run finds everything done and submits nothing
    assert main(["demo", "--quick", "--out", str(out), "cluster=local"]) == 0
    assert json.loads((out / "summary.json").read_text())["submitted"] == 0
