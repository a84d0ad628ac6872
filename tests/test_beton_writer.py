"""The ordered beton writer: ffcv-readable, deterministic across worker counts, atomic on failure."""
from dataclasses import dataclass

import numpy as np
import pytest

from dataset_writers.beton import sha256_file, verify_beton
from dataset_writers.errors import ImageError, WriterError
from dataset_writers.records import SplitIndex
from dataset_writers.write import ImageOptions, write_split


def test_same_bytes_for_any_worker_count(digits_index, tmp_path):
    index = digits_index["test"]
    opts = ImageOptions(max_resolution=32, page_size=1 << 21)
    digests = {w: write_split(index, tmp_path / f"w{w}.beton", image=opts, workers=w).sha256 for w in (0, 1, 2)}
    assert len(set(digests.values())) == 1
    assert digests[0] == sha256_file(tmp_path / "w2.beton")


def test_raw_mode_is_lossless_through_ffcv_loader(digits_index, tmp_path):
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption

    index = digits_index["test"]
    out = tmp_path / "raw.beton"
    write_split(index, out, image=ImageOptions(max_resolution=32, write_mode="raw", page_size=1 << 21), workers=2)
    loader = Loader(str(out), batch_size=64, num_workers=1, order=OrderOption.SEQUENTIAL, drop_last=False,
                    pipelines={"image": [SimpleRGBImageDecoder()], "index": [IntDecoder()]})
    got, ids = [], []
    for batch in loader:
        b = dict(zip(loader.pipeline_specs, batch))
        got.append(b["image"].copy())
        ids.append(b["index"][:, 0].copy())
    np.testing.assert_array_equal(np.concatenate(got), index.source.images)
    np.testing.assert_array_equal(np.concatenate(ids), index.ids)


@dataclass
class FailingImages:
    """Like ArrayImages, but position ``bad`` is an unreadable file."""

    images: np.ndarray
    bad: int

    def load(self, pos, draft_max_side=None):
        if pos == self.bad:
            raise ImageError(f"/data/img_{pos}.jpg", "cannot decode (truncated)")
        return self.images[pos]

    def describe(self, pos):
        return f"/data/img_{pos}.jpg"


def _index(n=300, bad=150):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 24, 20, 3), dtype=np.uint8)
    return SplitIndex("toy", "train", np.arange(n) + 1000, np.arange(n) % 3, ["a", "b", "c"],
                      FailingImages(images, bad))


@pytest.mark.parametrize("workers", [0, 2])
def test_fail_mode_stops_names_the_file_and_leaves_nothing(tmp_path, workers):
    out = tmp_path / "toy.beton"
    with pytest.raises(WriterError, match=r"/data/img_150.jpg: cannot decode \(truncated\); nothing was written"):
        write_split(_index(), out, image=ImageOptions(max_resolution=32, page_size=1 << 21), workers=workers)
    assert list(tmp_path.iterdir()) == []


def test_skip_mode_leaves_the_bad_image_out_and_lists_it(tmp_path):
    out = tmp_path / "toy.beton"
    m = write_split(_index(), out, image=ImageOptions(max_resolution=32, page_size=1 << 21), workers=2,
                    on_error="skip")
    assert m.num_samples == 299 and verify_beton(out) == 299
    assert [(s.file, s.reason) for s in m.skipped] == [("/data/img_150.jpg", "cannot decode (truncated)")]
    assert 1150 not in m.ids.values and len(m.ids.values) == 299


def test_existing_output_needs_overwrite(digits_index, tmp_path):
    out = tmp_path / "x.beton"
    out.write_text("precious")
    with pytest.raises(WriterError, match="already exists; pass --overwrite"):
        write_split(digits_index["test"], out, workers=0)
    assert out.read_text() == "precious"
