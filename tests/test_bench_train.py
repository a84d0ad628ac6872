"""``ffcv-ssl bench train`` on CPU with tiny settings: all three rates measured, the ratios computed from them."""
import json

import pytest

from dataset_writers.write import ImageOptions, write_split
from ffcv_ssl.cli import main


@pytest.fixture(scope="module")
def digits_beton(tmp_path_factory):
    from dataset_writers.registry import get_reader

    spec = get_reader("digits")
    out = tmp_path_factory.mktemp("bench") / "digits_test.beton"
    write_split(spec.read(None, "test", spec.options()), out, image=ImageOptions(max_resolution=32, page_size=1 << 21),
                workers=0)
    return out


def test_bench_train_reports_consistent_rates(digits_beton, tmp_path):
    out = tmp_path / "bench.json"
    rc = main(["bench", "train", "configs/pretrain/demo_simclr.yaml", f"data.train={digits_beton}",
               "data.batch_size=64", "data.num_workers=2", "--steps", "3", "--warmup", "1", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["schema"] == "ffcv-ssl/bench-train/1" and len(data["rows"]) == 1
    row = data["rows"][0]
    assert row["device"] == "cpu" and row["precision"] == "fp32" and row["views"] == 2 and row["batch"] == 64
    for key in ("model_views_per_s", "loader_views_per_s", "train_views_per_s"):
        assert row[key] > 0
    assert row["fed_ratio"] == pytest.approx(row["train_views_per_s"] / row["model_views_per_s"])
    assert 0.0 <= row["data_wait_frac"] < 1.0
    assert row["view_sizes"] == [[32, 32], [32, 32]]


def test_bench_train_bad_input_is_one_line(digits_beton, capsys):
    assert main(["bench", "train", "configs/pretrain/demo_simclr.yaml", f"data.train={digits_beton}",
                 "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    assert main(["bench", "train", "configs/pretrain/demo_simclr.yaml", "data.train=/nope.beton"]) == 2
    assert "does not exist" in capsys.readouterr().err
