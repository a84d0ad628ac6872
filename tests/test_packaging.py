"""The wheel is complete: a non-editable install has every module and every data file the code reads.

The wheel is built here (no dependencies resolved, ~2 s) and its file list compared with the checkout; the
end-to-end check of an installed wheel in a fresh venv is ``.ci/wheel_smoke.sh`` (run by ``.ci/run``).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("dist")
    shutil.rmtree(REPO / "build", ignore_errors=True)   # setuptools would ship stale copies of removed modules
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(out), str(REPO)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = out.glob("ffcv_ssl-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def _expected() -> set[str]:
    want = set()
    for top in ("ffcv_ssl", "dataset_writers"):
        want |= {p.relative_to(REPO).as_posix() for p in (REPO / top).rglob("*.py") if "__pycache__" not in p.parts}
    want |= {"ffcv_ssl/slurm/" + p.relative_to(REPO / "slurm").as_posix() for p in (REPO / "slurm").rglob("*")
             if p.suffix in (".py", ".sh")}
    want |= {"ffcv_ssl/configs/" + p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    want |= {"ffcv_ssl/data/" + p.name for p in (REPO / "ffcv_ssl" / "data").glob("*.yaml")}
    return want


def test_wheel_ships_every_module_and_data_file(wheel_names):
    missing = sorted(_expected() - wheel_names)
    assert not missing, f"missing from the wheel: {missing}"


def test_wheel_ships_the_compiled_resize_pass(wheel_names):
    """The SIMD horizontal resize pass is a compiled extension: a wheel without it would fall back to the
    slower numba pass without a word."""
    assert any(n.startswith("ffcv_ssl/ops/_hresize") and n.endswith((".so", ".pyd")) for n in wheel_names)


def test_every_package_directory_is_a_package():
    """find_packages skips a folder without __init__.py: its modules would silently be left out of the wheel."""
    bad = [str(d.relative_to(REPO)) for top in ("ffcv_ssl", "dataset_writers", "slurm")
           for d in [REPO / top, *(REPO / top).rglob("*")] if d.is_dir() and d.name != "__pycache__"
           and any(d.glob("*.py")) and not (d / "__init__.py").exists()]
    assert not bad, f"folders with modules but no __init__.py: {bad}"


def test_no_generic_top_level_names(wheel_names):
    """slurm/ installs as ffcv_ssl.slurm and configs/ as ffcv_ssl.configs: no top-level 'slurm' or 'configs'."""
    tops = {n.split("/", 1)[0] for n in wheel_names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert tops == {"ffcv_ssl", "dataset_writers"}, tops


def test_shipped_configs_resolve_from_any_directory(tmp_path, monkeypatch):
    """A sweep's 'configs/pretrain/x.yaml' resolves to the shipped copy when the working directory has none."""
    from ffcv_ssl.config import load_config
    from ffcv_ssl.paths import configs_root, resolve_config_path
    from ffcv_ssl.train.config import TrainConfig

    monkeypatch.chdir(tmp_path)
    p = resolve_config_path("configs/pretrain/simclr_rn50.yaml")
    assert p == configs_root() / "pretrain" / "simclr_rn50.yaml" and p.is_file()
    cfg = load_config(TrainConfig, "configs/pretrain/simclr_rn50.yaml", ["data.train=x.beton"])
    assert cfg.objective.name == "simclr"
    # a user's own copy in the working directory wins over the shipped one
    own = tmp_path / "configs" / "pretrain"
    own.mkdir(parents=True)
    (own / "simclr_rn50.yaml").write_text("objective: {name: byol}\n")
    assert load_config(TrainConfig, "configs/pretrain/simclr_rn50.yaml", ["data.train=x.beton"]).objective.name == "byol"
