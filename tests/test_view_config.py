"""``ViewConfig`` (``ops/recipe.py``), the one view-recipe type: its kernel arrays, its errors, non-square views.

The kernel arrays are written out by hand (SimCLR's defaults, column by column of ``ops/views.py``): they
are what the kernels read, so any change in how a config becomes arrays changes the augmentations. The
values equal those of the former ``ViewConfig.recipe()`` -> ``ViewRecipe`` conversion.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ffcv_ssl.config import load_config
from ffcv_ssl.errors import ConfigError
from ffcv_ssl.loading import eval_view, make_loader
from ffcv_ssl.ops.decoder import CROP_MODES, recipes_to_arrays
from ffcv_ssl.ops.recipe import CROPS, ViewConfig, expand_views
from ffcv_ssl.train.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "pretrain"

# scale lo/hi, log ratio lo/hi, center, flip, jitter_p, brightness, contrast, saturation, hue, gray, blur_p,
# sigma lo/hi, solarize_p, solarize threshold
SIMCLR = [0.08, 1.0, math.log(3 / 4), math.log(4 / 3), 0.875, 0.5, 0.8, 0.8, 0.8, 0.8, 0.2, 0.2, 0.5, 0.1, 2.0,
          0.0, 128.0]
BYOL_JITTER = {7: 0.4, 8: 0.4, 9: 0.2, 10: 0.1}


def floats(**columns) -> list:
    """SIMCLR with some columns changed: ``floats(c5=0.0)`` sets column 5."""
    row = list(SIMCLR)
    for col, value in columns.items():
        row[int(col[1:])] = value
    return row


def byol(blur_p: float, solarize_p: float) -> list:
    return floats(**{f"c{k}": v for k, v in BYOL_JITTER.items()}, c12=blur_p, c15=solarize_p)


# (views, expected floats per view, expected ints per view: out_h, out_w, crop mode, blur radius)
CASES = {
    "square": ([ViewConfig()], [SIMCLR], [[224, 224, 0, 11]]),
    # the blur kernel follows the shorter side: 10% of 40 -> 5 taps (radius 2), not 10% of 96 -> 11 taps
    "non_square": ([ViewConfig(size=40, width=96), ViewConfig(size=96, width=40)], [SIMCLR] * 2,
                   [[40, 96, 0, 2], [96, 40, 0, 2]]),
    "center_crop": ([eval_view(160)], [floats(c5=0.0, c6=0.0, c11=0.0, c12=0.0)], [[160, 160, 1, 0]]),
    "byol": ([ViewConfig(jitter=(0.4, 0.4, 0.2, 0.1), blur_p=1.0),
              ViewConfig(jitter=(0.4, 0.4, 0.2, 0.1), blur_p=0.1, solarize_p=0.2)],
             [byol(1.0, 0.0), byol(0.1, 0.2)], [[224, 224, 0, 11]] * 2),
}


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_arrays_are_the_recipe_values(name):
    views, want_f, want_i = CASES[name]
    vf, vi = recipes_to_arrays(views)
    assert vf.dtype == np.float64 and vi.dtype == np.int64
    np.testing.assert_array_equal(vf, np.array(want_f, np.float64))
    np.testing.assert_array_equal(vi, np.array(want_i, np.int64))


def test_shipped_byol_yaml_gives_the_same_arrays():
    """YAML hands tuples back as lists (OmegaConf 2.3); the kernel arrays must not notice."""
    cfg = load_config(TrainConfig, CONFIGS / "byol_rn50.yaml", ["data.train=/x.beton"])
    vf, vi = recipes_to_arrays(expand_views(cfg.data.views))
    np.testing.assert_array_equal(vf, np.array(CASES["byol"][1]))
    np.testing.assert_array_equal(vi, np.array(CASES["byol"][2]))


def test_groups_expand_by_count_in_order_and_the_kernel_refuses_a_group():
    groups = [ViewConfig(count=2, size=32), ViewConfig(count=1, size=24, width=20)]
    per_view = expand_views(groups)
    assert [v.shape for v in per_view] == [(32, 32), (32, 32), (24, 20)]
    assert all(v.count == 1 for v in per_view) and groups[0].count == 2     # the groups are not modified
    with pytest.raises(ValueError, match="count=2"):
        recipes_to_arrays(groups)


def test_every_crop_name_has_a_kernel_code():
    assert tuple(CROP_MODES) == CROPS


@pytest.mark.parametrize("bad,key", [(dict(size=0), "size"), (dict(width=0), "width"),
                                     (dict(solarize_threshold=300.0), "solarize_threshold"),
                                     (dict(blur_p=2.0), "blur_p"), (dict(center_ratio=0.0), "center_ratio")], ids=str)
def test_impossible_view_is_one_line_naming_the_key(bad, key):
    with pytest.raises(ConfigError) as exc:
        ViewConfig(**bad).validate()
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"view {key}=")


def test_width_from_yaml_and_override_loads_into_a_non_square_view(tmp_path):
    (tmp_path / "c.yaml").write_text("data:\n  train: /x.beton\n  views:\n    - {count: 2, size: 160, width: 96}\n")
    from_yaml = load_config(TrainConfig, tmp_path / "c.yaml")
    assert [v.shape for v in from_yaml.data.views] == [(160, 96)]
    square = load_config(TrainConfig, CONFIGS / "demo_simclr.yaml", ["data.train=/x.beton", "data.views.0.size=40"])
    assert square.data.views[0].width is None and square.data.views[0].shape == (40, 40)
    with pytest.raises(ConfigError, match="width"):
        load_config(TrainConfig, CONFIGS / "demo_simclr.yaml", ["data.train=/x.beton", "data.views.0.width=-3"])


def test_width_override_gives_non_square_tensors_through_the_loader(tmp_path):
    from loader_support import varied_photos, write_beton

    beton = write_beton(tmp_path / "photos.beton", varied_photos(8, (50, 120)), "jpg", 128)
    cfg = load_config(TrainConfig, CONFIGS / "demo_simclr.yaml",
                      [f"data.train={beton}", "data.views.0.size=40", "data.views.0.width=96", "data.batch_size=4",
                       "data.num_workers=1"])
    loader = make_loader(cfg.data)
    batch = next(iter(loader))
    assert loader.num_views == 2
    assert [tuple(v.shape) for v in batch.views] == [(4, 3, 40, 96)] * 2
