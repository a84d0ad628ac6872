"""``ffcv-ssl inspect``: what a beton holds (from its manifest), whether it is intact, and what it looks like.

Verification is independent of the writer: the checksum is recomputed from the file, the sample count
is read from the beton's own header with ffcv's ``Reader``, and the grid is decoded by ffcv's
``Loader`` (the same code that feeds training), so a beton that inspects well also loads well.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ffcv_ssl import ffcv_compat
from ffcv_ssl.files import save_figure

from .beton import sha256_file, verify_beton
from .beton_check import check_beton_path, open_beton
from .errors import WriterError
from .manifest import Manifest, manifest_path, read_manifest


def _beton(path: os.PathLike | str) -> Tuple[Path, Manifest]:
    """The path and its manifest, after the metadata checks every reader runs (``beton_check.open_beton``)."""
    path = check_beton_path(path)
    manifest = read_manifest(path)
    open_beton(path, manifest)
    return path, manifest


def verify(path: os.PathLike | str) -> Dict[str, Any]:
    """Recompute the sha256 and compare it and the header's sample count with the manifest."""
    path, manifest = _beton(path)
    header_samples = verify_beton(path)  # ffcv's Reader: header, field descriptors, allocation table bounds
    digest = sha256_file(path)
    result = {
        "sha256": digest, "sha256_expected": manifest.sha256, "sha256_ok": digest == manifest.sha256,
        "num_samples_header": header_samples, "num_samples_manifest": manifest.num_samples,
        "num_samples_ok": header_samples == manifest.num_samples,
    }
    result["ok"] = bool(result["sha256_ok"] and result["num_samples_ok"])
    return result


def summary(path: os.PathLike | str) -> Dict[str, Any]:
    """The manifest plus a few facts read from the file itself (``inspect --json`` prints the manifest's JSON)."""
    path, manifest = _beton(path)
    return {"beton": str(path), "manifest_file": str(manifest_path(path)), "size_bytes": path.stat().st_size,
            "manifest": manifest}


def sample_grid(path: os.PathLike | str, png: os.PathLike | str, n: int = 16, seed: int = 0, size: int = 160) -> Path:
    """Save a grid of ``n`` random samples (centre squares, decoded by ffcv's Loader) with their class names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder
    from ffcv.loader import Loader, OrderOption

    from ffcv_ssl.runtime import configure_numba

    path, manifest = _beton(path)
    total = manifest.num_samples
    if n < 1:
        raise WriterError(f"--grid needs at least one sample (got n={n})")
    picks = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
    configure_numba()
    pipelines: Dict[str, Any] = {"image": [CenterCropRGBImageDecoder((size, size), ratio=1.0)],
                                 "label": [IntDecoder()]}
    pipelines.update({name: None for name in manifest.fields if name not in pipelines})  # not decoded
    loader = Loader(str(path), batch_size=len(picks), num_workers=1, order=OrderOption.SEQUENTIAL,
                    indices=picks.tolist(), drop_last=False, pipelines=pipelines)
    batch = dict(zip(loader.pipeline_specs, next(iter(loader))))
    images, labels = np.asarray(batch["image"]), np.asarray(batch["label"]).reshape(-1)
    names = manifest.class_names
    cols = int(np.ceil(np.sqrt(len(picks))))
    rows = int(np.ceil(len(picks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, label, idx in zip(axes.ravel(), images, labels, picks):
        ax.imshow(img)
        name = names[label] if 0 <= label < len(names) else str(label)
        ax.set_title(f"#{idx} {label}: {name}"[:32], fontsize=7)
    fig.suptitle(f"{manifest.dataset}/{manifest.split}: {len(picks)} of {total} samples", fontsize=9)
    fig.tight_layout()
    try:
        return save_figure(fig, png, dpi=100)
    finally:
        plt.close(fig)


def stored_image(path: os.PathLike | str, position: int) -> tuple:
    """(RGB uint8 image exactly as stored, sample id) of sample ``position``: JPEG bytes decoded by Pillow."""
    import io

    from PIL import Image

    reader = open_beton(path)
    names = list(reader.handlers)
    meta = reader.metadata[f"f{names.index('image')}"][position]
    sample_id = int(reader.metadata[f"f{names.index('index')}"][position]) if "index" in names else position
    table = reader.alloc_table
    size = int(table["size"][np.flatnonzero(table["ptr"] == meta["data_ptr"])[0]])
    with open(path, "rb") as fp:
        fp.seek(int(meta["data_ptr"]))
        data = fp.read(size)
    if int(meta["mode"]) == ffcv_compat.IMAGE_MODES["jpg"]:             # else raw
        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    else:
        image = np.frombuffer(data, np.uint8).reshape(int(meta["height"]), int(meta["width"]), 3)
    return image, sample_id


def corruption_grid(path: os.PathLike | str, png: os.PathLike | str, specs, n: int = 6, seed: int = 0,
                    corrupt_seed: int = 0) -> Path:
    """Clean images of a beton beside the same images under each corruption condition (one column each).

    Each condition is a corruption spec or chain (``paper_jpeg``, ``downsample:factor=4,size=256``,
    ``resize:size=256+jpeg:quality=10``), applied to the stored image with the writer's per-sample seeding,
    i.e. exactly what ``ffcv-ssl write --corrupt`` would store before its own encoding.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .corruptions import CorruptionChain

    path, manifest = _beton(path)
    chains = [CorruptionChain.build(spec, corrupt_seed) for spec in specs]   # bad specs: one line, first
    total = manifest.num_samples
    picks = np.sort(np.random.default_rng(seed).choice(total, size=min(max(n, 1), total), replace=False))
    cols = 1 + len(chains)
    fig, axes = plt.subplots(len(picks), cols, figsize=(2.3 * cols, 2.3 * len(picks)), squeeze=False)
    stored = "stored (already corrupted: " + "+".join(e.get("id", e.get("name", "")) for e in manifest.corruption) \
        + ")" if manifest.corruption else "clean"
    for r, pos in enumerate(picks):
        image, sample_id = stored_image(path, int(pos))
        panels = [(stored, image)] + [(c.describe(), c.apply(image, sample_id)) for c in chains]
        for c, (title, img) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
        axes[r, 0].set_ylabel(f"#{pos}", fontsize=7)
    fig.suptitle(f"{manifest.dataset}/{manifest.split}: same images, each corruption condition",
                 fontsize=9)
    fig.tight_layout()
    try:
        return save_figure(fig, png, dpi=100)
    finally:
        plt.close(fig)


def render(info: Dict[str, Any], checks: Optional[Dict[str, Any]] = None) -> None:
    """Print the summary (and verification) as rich tables."""
    from rich.table import Table

    from ffcv_ssl.console import console

    m: Manifest = info["manifest"]
    t = Table(title=f"{info['beton']}", show_header=False, title_justify="left")
    t.add_column("key", style="bold")
    t.add_column("value")
    counts = np.asarray(m.counts_per_class, dtype=np.int64)
    nonzero = counts[counts > 0]
    t.add_row("dataset / split", f"{m.dataset} / {m.split}")
    t.add_row("samples", f"{m.num_samples:,}  ({info['size_bytes'] / 2**20:,.1f} MiB)")
    per_class = (f"; per class min {nonzero.min():,} / mean {nonzero.mean():,.1f} / max {nonzero.max():,}"
                 if len(nonzero) else "")
    t.add_row("classes", f"{m.num_classes} ({len(nonzero)} present{per_class})")
    t.add_row("fields", ", ".join(f"{k}: {v}" for k, v in m.fields.items()))
    if m.label_levels:
        t.add_row("label levels", ", ".join(f"{k} ({len(v.names)})" for k, v in m.label_levels.items()))
    t.add_row("storage", ", ".join(f"{k}={v}" for k, v in m.image.items()))
    stats = m.image_stats
    if stats.stored_height is not None and stats.stored_width is not None:
        t.add_row("stored size", f"h {stats.stored_height.mean} (max {stats.stored_height.max}), "
                                 f"w {stats.stored_width.mean} (max {stats.stored_width.max}), "
                                 f"{(stats.mean_stored_bytes or 0) / 1024:,.1f} KiB/image")
    subset = m.subset
    t.add_row("subset", "full split" if subset is None else
              f"{subset.n:,} of {subset.of:,} (seed {subset.seed}, {'balanced' if subset.balanced else 'uniform'})")
    t.add_row("corruption", ", ".join(str(c) for c in m.corruption) or "none")
    t.add_row("reader options", ", ".join(f"{k}={v}" for k, v in m.reader_options.items()
                                          if not isinstance(v, (list, dict)))[:300])
    t.add_row("skipped", f"{len(m.skipped)}" + (f" (first: {m.skipped[0].file}: {m.skipped[0].reason})"
                                               if m.skipped else ""))
    t.add_row("sha256", m.sha256)
    t.add_row("written by", f"ffcv-ssl {m.tool_version} on {m.created}")
    console.print(t)
    if len(m.sources) > 1 or m.dataset == "pool":
        s = Table(title="sources")
        for col in ("source", "dataset/split", "samples", "label offset", "classes", "sha256"):
            s.add_column(col)
        for src in m.sources:
            samples = "" if src.num_samples is None else str(src.num_samples)
            s.add_row(str(src.source), f"{src.dataset}/{src.split}", samples, str(src.label_offset),
                      str(src.num_classes), (src.sha256 or "")[:16])
        console.print(s)
    if checks is not None:
        colour = "green" if checks["ok"] else "red"
        console.print(f"[{colour}]verify: sha256 {'ok' if checks['sha256_ok'] else 'MISMATCH'}; samples in header "
                      f"{checks['num_samples_header']:,} vs manifest {checks['num_samples_manifest']:,} "
                      f"{'ok' if checks['num_samples_ok'] else 'MISMATCH'}[/]")
