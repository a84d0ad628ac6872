"""Where the shipped YAML configs live, in a checkout and in an installed wheel.

The repository keeps ``configs/`` at its root (values only, as the design asks); a wheel ships the same files as
``ffcv_ssl/configs/`` (``package_dir`` in setup.py). Sweep files and docs name configs by their repository path
(``configs/pretrain/simclr_rn50.yaml``), so such a path resolves against the working directory first (a user's own
edited copy wins) and then against the shipped copy. That keeps sweeps valid from any directory, on a compute node
of a cluster-wide install as much as in a checkout.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def configs_root() -> Path:
    """The directory of the shipped configs: ``ffcv_ssl/configs`` when installed, ``<repo>/configs`` in a checkout."""
    installed = PACKAGE / "configs"
    return installed if installed.is_dir() else PACKAGE.parent / "configs"


def resolve_config_path(path: str | os.PathLike) -> Path:
    """``path`` if it exists; else a relative ``configs/...`` path looked up among the shipped configs."""
    p = Path(path)
    if p.exists() or p.is_absolute() or not p.parts or p.parts[0] != "configs":
        return p
    shipped = configs_root().joinpath(*p.parts[1:])
    return shipped if shipped.exists() else p
