"""``ffcv-ssl write --corrupt``: the chain is applied in the writer, recorded, deterministic; inspect shows it."""
import numpy as np
from PIL import Image

from dataset_writers.corruptions import CorruptionChain
from dataset_writers.inspect import stored_image
from dataset_writers.manifest import read_manifest
from ffcv_ssl.cli import main


def _write(tmp_path, name, *extra):
    out = tmp_path / f"{name}.beton"
    rc = main(["write", "digits", "--split", "test", "--out", str(out), "--max-resolution", "32",
               "--write-mode", "raw", "--workers", "2", *extra])
    assert rc == 0
    return out


def test_corrupted_beton_holds_exactly_the_chain_applied_to_the_clean_images(tmp_path):
    clean = _write(tmp_path, "clean")
    spec = ["downsample:size=32,factor=4", "salt_pepper:p=0.1"]
    bad = _write(tmp_path, "bad", "--corrupt", spec[0], "--corrupt", spec[1], "--corrupt-seed", "7")
    chain = CorruptionChain.build(spec, 7)
    m = read_manifest(bad)
    assert m.corruption == chain.manifest()
    assert [e["seed"] for e in m.corruption] == [7, 7]
    for pos in (0, 17, 358):
        img, sid = stored_image(clean, pos)
        got, sid2 = stored_image(bad, pos)
        assert sid == sid2
        np.testing.assert_array_equal(got, chain.apply(img, sid))
    # a second write (another worker count) is byte-identical
    again = tmp_path / "again.beton"
    main(["write", "digits", "--split", "test", "--out", str(again), "--max-resolution", "32", "--write-mode", "raw",
          "--workers", "1", "--corrupt", spec[0], "--corrupt", spec[1], "--corrupt-seed", "7"])
    assert read_manifest(again).sha256 == m.sha256


def test_label_noise_is_recorded_per_sample(tmp_path):
    clean = read_manifest(_write(tmp_path, "clean"))
    noisy = read_manifest(_write(tmp_path, "noisy", "--corrupt", "label_noise:rate=0.3"))
    record = noisy.label_noise
    assert record["num_samples"] == clean.num_samples
    assert 0.2 < record["fraction_changed"] < 0.4
    assert all(o != n for o, n in zip(record["original"], record["noisy"]))
    assert sum(noisy.counts_per_class) == clean.num_samples


def test_bad_corruption_fails_before_writing(tmp_path, capsys):
    out = tmp_path / "x.beton"
    rc = main(["write", "digits", "--split", "test", "--out", str(out), "--corrupt", "jpeg:quality=0"])
    assert rc == 2 and "quality=0 is outside [1, 100]" in capsys.readouterr().err
    rc = main(["write", "digits", "--split", "test", "--out", str(out), "--corrupt", "jpg:quality=10"])
    assert rc == 2 and "did you mean 'jpeg'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_inspect_grid_shows_clean_and_each_condition(tmp_path):
    clean = _write(tmp_path, "clean")
    png = tmp_path / "grid.png"
    rc = main(["inspect", str(clean), "--grid", str(png), "--grid-size", "2", "--corrupt", "paper_jpeg",
               "--corrupt", "downsample:size=32,factor=4", "--json"])
    assert rc == 0
    with Image.open(png) as im:
        w, h = im.size
    assert abs(w / h - 1.5) < 0.05          # 3 columns (clean + 2 conditions) x 2 rows of equal squares
