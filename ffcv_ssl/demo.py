"""``ffcv-ssl demo``: the embedded miniature study on scikit-learn's digits (no download).

First slice: write the digits to train/test betons with the real writer, read them back with the real
ffcv ``Loader``, and print what is inside and how fast it reads.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

import numpy as np

from .console import console
from .errors import UserError


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    image_size: int = 32           # digits are upscaled from 8x8 to this side (bilinear)
    jpeg_quality: int = 90
    workers: int = 0               # 0: the CPUs of this process's affinity mask
    seed: int = 0


def prepare_out_dir(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory; choose another path")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"--out {out}: {parent} is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_digits(out_dir: Path, cfg: DemoConfig) -> Dict[str, Dict[str, Any]]:
    """Train and test betons of the digits (JPEG), through the same writer as the real datasets."""
    from dataset_writers.registry import get_reader
    from dataset_writers.readers.digits import DigitsOptions
    from dataset_writers.write import ImageOptions, write_split

    spec = get_reader("digits")
    opts = DigitsOptions(size=cfg.image_size, split_seed=cfg.seed)
    image = ImageOptions(max_resolution=cfg.image_size, write_mode="jpg", jpeg_quality=cfg.jpeg_quality,
                         page_size=1 << 21)
    manifests = {}
    for split in spec.splits:
        index = spec.read(None, split, opts)
        manifests[split] = write_split(index, out_dir / f"digits_{split}.beton", image=image,
                                       workers=cfg.workers or None, overwrite=True, description=f"write {split}")
    return manifests


def read_back(beton: Path, workers: int) -> Dict[str, Any]:
    """Read every sample with ffcv's Loader; returns labels, images and the read rate."""
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption

    from .runtime import configure_numba, cpu_budget

    configure_numba()
    loader = Loader(str(beton), batch_size=256, num_workers=workers or cpu_budget(), order=OrderOption.SEQUENTIAL,
                    drop_last=False, pipelines={"image": [SimpleRGBImageDecoder()], "label": [IntDecoder()]},
                    batches_ahead=2)
    images, labels = [], []
    t0 = time.perf_counter()
    for epoch in range(2):  # the first epoch includes numba compilation; report the second
        if epoch == 1:
            t0 = time.perf_counter()
            images, labels = [], []
        for batch in loader:
            out = dict(zip(loader.pipeline_specs, batch))
            images.append(out["image"].copy())  # ffcv reuses its batch buffers
            labels.append(out["label"][:, 0].copy())
    rate = sum(len(x) for x in labels) / (time.perf_counter() - t0)
    return {"images": np.concatenate(images), "labels": np.concatenate(labels), "images_per_s": rate}


def run_demo(cfg: DemoConfig) -> Dict[str, Any]:
    from rich.table import Table

    start = time.perf_counter()
    out = prepare_out_dir(Path(cfg.out))
    data_dir = out / "data"
    data_dir.mkdir(exist_ok=True)
    console.rule("[bold]ffcv-ssl demo[/]: scikit-learn digits -> .beton -> ffcv Loader")
    manifests = write_digits(data_dir, cfg)
    reads = {split: read_back(data_dir / f"digits_{split}.beton", cfg.workers) for split in manifests}

    splits = list(manifests)
    counts = {split: np.bincount(reads[split]["labels"], minlength=10) for split in splits}
    per_class = Table(title="images per class (read back)")
    per_class.add_column("digit", justify="right")
    for split in splits:
        per_class.add_column(split, justify="right")
    for d in range(10):
        per_class.add_row(str(d), *[str(counts[split][d]) for split in splits])
    summary = Table(title="betons")
    for col in ("split", "images", "MiB", "write img/s", "read img/s"):
        summary.add_column(col, justify="right" if col != "split" else "left")
    for split, m in manifests.items():
        size = (data_dir / f"digits_{split}.beton").stat().st_size / 2**20
        summary.add_row(split, str(m["num_samples"]), f"{size:.2f}", f"{m['write']['images_per_s']:,.0f}",
                        f"{reads[split]['images_per_s']:,.0f}")
    console.print(per_class)
    console.print(summary)
    elapsed = time.perf_counter() - start
    console.print(f"betons and manifests in [bold]{data_dir}[/]; done in {elapsed:.1f} s")
    return {"manifests": manifests, "reads": reads, "seconds": elapsed}
