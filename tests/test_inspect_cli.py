"""``ffcv-ssl write`` / ``write pool`` / ``inspect`` through the real CLI entry point (in process)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fixtures.datasets import (build_imagenet, build_places365, read_beton,  # noqa: E402
                               write_places_hierarchy_flags)

from dataset_writers.beton import sha256_file  # noqa: E402
from dataset_writers.manifest import read_manifest  # noqa: E402
from ffcv_ssl.cli import main  # noqa: E402


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    places = build_places365(base / "places365")
    write_places_hierarchy_flags(places.root / "scene_hierarchy.csv")
    imagenet = build_imagenet(base / "imagenet", "devkit", per_class=1)
    return {"places": places, "imagenet": imagenet, "base": base}


@pytest.fixture(scope="module")
def written(data, tmp_path_factory):
    """A places365 val beton written by the CLI, KEY=VALUE options mixed with flags."""
    out = tmp_path_factory.mktemp("written") / "places_val.beton"
    code = main(["write", "places365", "--root", str(data["places"].root), "hierarchy=scene_hierarchy.csv",
                 "--split", "val", "--out", str(out), "--max-resolution", "128", "--workers", "1",
                 "resolution=256", "--jpeg-quality", "95"])
    assert code == 0
    return out


def test_cli_write_applies_reader_and_storage_options(written):
    m = read_manifest(written)
    assert m.reader_options["hierarchy"] == "scene_hierarchy.csv" and m.reader_options["resolution"] == "256"
    assert set(m.label_levels) == {"places3", "places16"}
    assert m.image["max_resolution"] == 128 and m.image["jpeg_quality"] == 95
    got = read_beton(written, ints=("label", "places3"))
    assert got["image"].shape[1:] == (128, 128, 3) and m.num_samples == len(got["label"]) == 10


def test_inspect_json_verify_and_grid(written, capsys, tmp_path):
    from PIL import Image

    png = tmp_path / "grid.png"
    code, out, err = cli(capsys, "inspect", written, "--json", "--verify", "--grid", png, "--grid-size", "6")
    assert code == 0 and err == []
    info = json.loads(out)
    assert info["verify"] == {"sha256": sha256_file(written), "sha256_expected": sha256_file(written),
                              "sha256_ok": True, "num_samples_header": 10, "num_samples_manifest": 10,
                              "num_samples_ok": True, "ok": True}
    assert info["manifest"]["dataset"] == "places365" and info["size_bytes"] == written.stat().st_size
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width >= 300 and im.height >= 300
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 20                                        # real photographs, not a blank canvas
    code, out, _ = cli(capsys, "inspect", written)                   # rich summary
    assert code == 0 and "places365 / val" in out and "places16 (16)" in out


def test_inspect_verify_detects_a_changed_file(written, capsys, tmp_path):
    import shutil

    copy = tmp_path / "copy.beton"
    shutil.copy(written, copy)
    shutil.copy(written.with_name("places_val.manifest.json"), tmp_path / "copy.manifest.json")
    from ffcv.reader import Reader

    data = bytearray(copy.read_bytes())
    data[int(Reader(str(copy)).alloc_table["ptr"][3]) + 200] ^= 0xFF     # one flipped bit pattern in a JPEG
    copy.write_bytes(bytes(data))
    code, _, err = cli(capsys, "inspect", copy, "--verify")
    assert code == 2 and len(err) == 1 and "sha256 does not match its manifest" in err[0] and str(copy) in err[0]
    copy.write_bytes(bytes(data[: len(data) // 2]))                    # a truncated copy
    code, _, err = cli(capsys, "inspect", copy, "--verify")
    assert code == 2 and len(err) == 1 and str(copy) in err[0] and "truncated" in err[0]


def test_cli_pool(written, data, capsys, tmp_path):
    im = tmp_path / "imagenet_val.beton"
    assert cli(capsys, "write", "imagenet", "--root", data["imagenet"].root, "--split", "val", "--out", im,
               "--workers", "1")[0] == 0
    pool = tmp_path / "pool.beton"
    code, out, err = cli(capsys, "write", "pool", "--part", f"{written}:4", "--part", im, "--out", pool)
    assert code == 0 and "wrote" in out
    m = read_manifest(pool)
    assert [s.label_offset for s in m.sources] == [0, 72] and m.num_samples == 4 + 12
    assert m.num_classes == 72 + 5


@pytest.mark.parametrize("args, message", [
    (["write", "imagenett", "--root", "{root}", "--split", "val"],
     "unknown dataset 'imagenett'; did you mean 'imagenet'?"),
    (["write", "imagenet", "--root", "{root}/nowhere", "--split", "val"],
     "/nowhere does not exist; point it at the folder"),
    (["write", "imagenet", "--root", "{root}", "--split", "test"],
     "imagenet has no split 'test'; choose --split from train, val"),
    (["write", "imagenet", "--root", "{root}", "--split", "val", "val_layot=kaggle"],
     "unknown config key 'val_layot'; did you mean 'val_layout'?"),
    (["write", "imagenet", "--root", "{root}", "--split", "val", "val_layout=zip"], "val_layout='zip' is not one of"),
    (["write", "imagenet", "--root", "{root}", "--split", "val", "val_layout=kaggle"],
     "LOC_val_solution.csv not found; it ships in the Kaggle archive"),
    (["write", "pool", "--root", "{root}", "--part", "x.beton"], "--root cannot be used with 'write pool'"),
    (["write", "imagenet", "--root", "{root}", "--split", "val", "--jpeg-quality", "0"], "--jpeg-quality 0 must be"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(data, capsys, tmp_path, args, message):
    out = tmp_path / "x.beton"
    root = str(data["imagenet"].root)
    code, _, err = cli(capsys, *[a.format(root=root) for a in args], "--out", out)
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_write_help_lists_every_dataset_and_its_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["write", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("imagenet:", "inat21:", "places365:", "glc20:", "val_layout=auto", "label_rule=centre",
                 "hierarchy=", "--subset", "--on-error", "--max-resolution", "default 512"):
        assert name in out, name
