"""Typed configs: defaults <- YAML <- overrides, and one-line errors that name the key."""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import pytest
from omegaconf import MISSING

from ffcv_ssl.config import ConfigError, config_to_yaml, load_config, save_config


@dataclass
class View:
    size: int = 224
    scale: Tuple[float, float] = (0.08, 1.0)
    blur_p: float = 0.5


@dataclass
class Data:
    train: str = MISSING
    batch_size: int = 256
    views: List[View] = field(default_factory=lambda: [View(), View(blur_p=0.1)])


@dataclass
class Train:
    data: Data = field(default_factory=Data)
    lr: float = 0.3
    amp: bool = True
    note: Optional[str] = None


def test_defaults_yaml_and_overrides_merge_in_order(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("data:\n  train: /x.beton\n  batch_size: 64\nlr: 0.6\n")
    cfg = load_config(Train, cfg_file, ["lr=1e-3", "data.views.0.size=160", "note=hello", "amp=false"])
    assert isinstance(cfg, Train) and isinstance(cfg.data.views[0], View)
    assert cfg.data.train == "/x.beton" and cfg.data.batch_size == 64      # from YAML
    assert cfg.lr == pytest.approx(1e-3)                                   # override beats YAML
    assert cfg.data.views[0].size == 160 and cfg.data.views[1].size == 224  # list element override
    assert cfg.data.views[1].blur_p == 0.1                                 # untouched default
    assert cfg.note == "hello" and cfg.amp is False
    assert isinstance(cfg.data.views[0].scale, tuple)                       # tuples stay tuples


def test_yaml_list_replaces_default_list_and_fills_element_defaults(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("data:\n  train: t\n  views:\n    - {size: 96}\n")
    cfg = load_config(Train, cfg_file)
    assert len(cfg.data.views) == 1 and cfg.data.views[0].size == 96 and cfg.data.views[0].blur_p == 0.5


@pytest.mark.parametrize("override, needle", [
    ("data.batchsize=3", "unknown config key 'data.batchsize'; did you mean 'batch_size'?"),
    ("lrr=0.1", "unknown config key 'lrr'; did you mean 'lr'?"),
    ("data.views.0.sise=3", "unknown config key 'data.views.0.sise'; did you mean 'size'?"),
])
def test_unknown_override_key_names_it_and_suggests(override, needle):
    with pytest.raises(ConfigError) as exc:
        load_config(Train, None, ["data.train=x", override])
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unknown_key_in_yaml_names_key_and_file(tmp_path):
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text("data:\n  train: t\n  batch_sise: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(Train, cfg_file)
    msg = str(exc.value)
    assert "unknown config key 'data.batch_sise'" in msg and "did you mean 'batch_size'" in msg
    assert str(cfg_file) in msg


@pytest.mark.parametrize("override, key, expected", [
    ("lr=fast", "lr", "float"),
    ("data.batch_size=1.5", "data.batch_size", "int"),
    ("amp=maybe", "amp", "bool"),
])
def test_wrong_type_names_key_and_expected_type(override, key, expected):
    with pytest.raises(ConfigError) as exc:
        load_config(Train, None, ["data.train=x", override])
    msg = str(exc.value)
    assert f"config key '{key}'" in msg and f"expected {expected}" in msg and "\n" not in msg


def test_list_index_out_of_range_is_one_line():
    with pytest.raises(ConfigError, match=r"'data.views' is a list of 2 element\(s\), no index '5'"):
        load_config(Train, None, ["data.train=x", "data.views.5.size=3"])


def test_missing_mandatory_value_says_how_to_set_it():
    with pytest.raises(ConfigError, match=r"config key 'data.train' is required: .* data.train=VALUE"):
        load_config(Train)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Train, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(Train, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(Train, listy)


def test_malformed_override():
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(Train, None, ["data.train"])


def test_save_config_round_trips_and_is_atomic(tmp_path):
    cfg = load_config(Train, None, ["data.train=/a.beton", "data.views.1.size=192"])
    path = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]   # no temp file left behind
    again = load_config(Train, path)
    assert again == cfg
    assert config_to_yaml(again) == path.read_text()


def test_validate_hook_runs_after_merge():
    @dataclass
    class WithCheck:
        p: float = 0.5

        def validate(self):
            if not 0 <= self.p <= 1:
                raise ConfigError(f"p={self.p} must be in [0, 1]")

    assert load_config(WithCheck, None, ["p=0.25"]).p == 0.25
    with pytest.raises(ConfigError, match=r"p=1.5 must be in \[0, 1\]"):
        load_config(WithCheck, None, ["p=1.5"])
