"""The typed ``Manifest``: the JSON is the writers' as before, and bad files are one line.

``fixtures/manifests/`` holds manifests written by the dict builders this class replaced (the three betons of
``_write_the_fixture_betons``): reading one and saving it gives the same bytes, and the typed builders
write the same JSON (apart from the time, version, timings and checksums of a given run).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset_writers.errors import WriterError
from dataset_writers.manifest import Manifest, Source, manifest_path, read_manifest

FIXTURES = Path(__file__).parent / "fixtures" / "manifests"
NAMES = ("digits_test", "digits_train_noisy", "pool")


def _copy(name: str, directory: Path, edit=None) -> Path:
    """The committed manifest ``name`` beside a (non-existent) beton in ``directory``, optionally edited."""
    data = json.loads((FIXTURES / f"{name}.manifest.json").read_text())
    if edit is not None:
        edit(data)
    beton = directory / f"{name}.beton"
    manifest_path(beton).write_text(json.dumps(data, indent=1) + "\n")
    return beton


@pytest.mark.parametrize("name", NAMES)
def test_a_manifest_from_the_old_builders_reads_and_saves_byte_identical(name, tmp_path):
    m = read_manifest(FIXTURES / f"{name}.beton")
    m.save(tmp_path / "again.manifest.json")
    assert (tmp_path / "again.manifest.json").read_text() == (FIXTURES / f"{name}.manifest.json").read_text()
    assert Manifest.from_dict(m.to_dict(), "x") == m


def test_manifest_fields_are_typed_attributes():
    split, noisy, pool = (read_manifest(FIXTURES / f"{n}.beton") for n in NAMES)
    assert split.num_samples == 359 and split.num_classes == 10 and split.subset is None and split.corruption == []
    assert split.label_levels["half"].names == ["0-4", "5-9"] and split.label_levels["half"].of_label[7] == 1
    assert split.ids.count == 359 and len(split.ids.values) == 359 and split.write.workers == 0
    assert split.image_stats.stored_height.max == 16 and split.image_stats.original_width.mean == 16.0
    assert split.sources == [Source(source=0, dataset="digits", split="test", label_offset=0, num_classes=10)]
    assert not split.sources[0].is_pool_part and split.label_noise is None and split.extra == {}
    assert noisy.subset.n == 12 and noisy.subset.seed == 3 and noisy.label_noise["num_samples"] == 12
    assert [c["id"] for c in noisy.corruption] == ["label_noise:rate=0.5"]
    first, second = pool.sources
    assert first.is_pool_part and first.subset.n == 5 and first.part_subset is None and first.label_levels == ["half"]
    assert second.part_subset == noisy.subset and second.label_offset == 10 and second.sha256 == noisy.sha256
    assert pool.image_stats.original_height is None and pool.corruption == noisy.corruption


def _normalised(m: Manifest) -> str:
    """The JSON without what differs between runs: time, version, timings, and checksums of the betons' bytes."""
    data = m.to_dict()
    data.update(created="T", tool_version="V", sha256="S", write={"seconds": 0, "workers": data["write"]["workers"],
                                                                   "images_per_s": 0})
    for source in data["sources"]:
        if "sha256" in source:
            source["sha256"] = "S"
    return json.dumps(data, indent=1)


def test_the_builders_write_the_json_the_old_dict_builders_wrote(tmp_path, monkeypatch):
    """The same three betons the fixtures came from, written again (relative paths: the pool records them)."""
    from dataset_writers.beton import sha256_file
    from dataset_writers.pool import write_pool
    from dataset_writers.write import ImageOptions, write_dataset

    monkeypatch.chdir(tmp_path)
    image = ImageOptions(max_resolution=16, write_mode="raw", page_size=1 << 21)
    returned = [
        write_dataset("digits", None, "test", "digits_test.beton", options=["size=16"], image=image, workers=0),
        write_dataset("digits", None, "train", "digits_train_noisy.beton", options=["size=16"], image=image,
                      workers=0, subset=12, seed=3, corruptions=["label_noise:rate=0.5"], corrupt_seed=1),
        write_pool(["digits_test.beton:5", "digits_train_noisy.beton"], "pool.beton", seed=2),
    ]
    for name, m in zip(NAMES, returned):
        assert isinstance(m, Manifest) and read_manifest(f"{name}.beton") == m
        assert m.sha256 == sha256_file(f"{name}.beton")
        assert _normalised(m) == _normalised(read_manifest(FIXTURES / f"{name}.beton")), name
    assert [s.sha256 for s in returned[2].sources] == [returned[0].sha256, returned[1].sha256]


def test_keys_of_a_newer_version_are_kept_and_written_back_last(tmp_path):
    beton = _copy("digits_test", tmp_path, lambda d: d.update(future={"a": [1, 2]}))
    m = read_manifest(beton)
    assert m.extra == {"future": {"a": [1, 2]}}
    assert list(m.to_dict())[-2:] == ["write", "future"]
    assert Manifest.from_dict(m.to_dict(), "x") == m


@pytest.mark.parametrize("edit, key, expected", [
    (lambda d: d.pop("num_classes"), "'num_classes'", "no 'num_classes'"),
    (lambda d: d.update(num_samples="359"), "'num_samples' is a string", "expected an integer"),
    (lambda d: d["sources"][0].update(num_classes=None), "'sources.0.num_classes' is null", "expected an integer"),
    (lambda d: d["ids"]["values"].__setitem__(3, 1.5), "'ids.values.3' is a number", "expected an integer"),
    (lambda d: d["label_levels"]["half"].pop("of_label"), "'label_levels.half.of_label'", "no "),
    (lambda d: d.update(image_stats=[]), "'image_stats' is a list", "expected an object"),
])
def test_a_missing_or_mistyped_key_is_one_line_naming_the_file_and_the_key(tmp_path, edit, key, expected):
    beton = _copy("digits_test", tmp_path, edit)
    with pytest.raises(WriterError) as err:
        read_manifest(beton)
    text = str(err.value)
    assert text.startswith(f"{manifest_path(beton)}: ") and key in text and expected in text and "\n" not in text
    assert "rewrite the beton with 'ffcv-ssl write'" in text


def test_missing_bad_json_and_foreign_schema_are_one_line(tmp_path):
    with pytest.raises(WriterError, match=r"x\.beton: no manifest beside it \(x\.manifest\.json\)"):
        read_manifest(tmp_path / "x.beton")
    manifest_path(tmp_path / "x.beton").write_text("{not json")
    with pytest.raises(WriterError, match=r"x\.manifest\.json: not valid JSON"):
        read_manifest(tmp_path / "x.beton")
    for data in ({"schema": "ffcv-ssl/manifest/9"}, ["a", "list"]):
        manifest_path(tmp_path / "x.beton").write_text(json.dumps(data))
        with pytest.raises(WriterError, match=r"x\.manifest\.json: unknown manifest schema"):
            read_manifest(tmp_path / "x.beton")


def test_inspect_names_the_manifest_that_lacks_num_classes_and_exits_2(tmp_path, capsys, digits_index):
    from dataset_writers.write import ImageOptions, write_split
    from ffcv_ssl.cli import main

    beton = tmp_path / "digits.beton"
    write_split(digits_index["test"], beton, positions=np.arange(8), workers=0,
                image=ImageOptions(max_resolution=16, write_mode="raw", page_size=1 << 21))
    data = json.loads(manifest_path(beton).read_text())
    del data["num_classes"]
    manifest_path(beton).write_text(json.dumps(data))
    assert main(["inspect", str(beton)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and str(manifest_path(beton)) in err[0] and "'num_classes'" in err[0], err


def test_the_manifest_module_reads_without_ffcv_cv2_or_torch(tmp_path):
    """The report reads manifests; it must not pay for (or need) the writer's heavy imports."""
    shutil.copy(FIXTURES / "pool.manifest.json", tmp_path / "pool.manifest.json")
    code = ("import sys\nfor m in ('cv2', 'ffcv', 'torch', 'torchvision', 'timm'):\n    sys.modules[m] = None\n"
            "from dataset_writers.manifest import read_manifest\n"
            f"print(read_manifest({str(tmp_path / 'pool.beton')!r}).sources[1].dataset)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "digits", proc.stderr
