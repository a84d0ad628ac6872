"""``ffcv-ssl bench write``: our beton writer vs a bare ``ffcv.writer.DatasetWriter``, and the writer's peak memory.

Both writers get the same realistic JPEGs (crops of the real photographs shipped in scikit-learn and
scikit-image, ~500x375, quality 90, like ImageNet), the same storage options and worker count, and run
alternately in fresh child processes of the same run; the best of ``--repeats`` runs is reported, so
page-cache and start-up effects hit both alike. Our writer does more per image (EXIF orientation, the
``source``/``index`` fields, ordered placement, checksum and verification); the target is <= 10% fewer
images/s than bare ffcv. Memory: the peak RSS of the writing process and of its workers at two sizes
(default 2k and 20k images; the larger cycles over the same files); a streaming writer's peak does not
grow with the number of images.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

from . import register_bench


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", type=int, default=3000, help="distinct JPEGs for the throughput runs (default 3000)")
    p.add_argument("--workers", type=int, default=0, help="encoding processes for both writers (default 0 = CPUs)")
    p.add_argument("--max-resolution", type=int, default=384, help="longer-side cap for both writers (default 384)")
    p.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality for both writers (default 90)")
    p.add_argument("--repeats", type=int, default=2, help="alternating runs per writer; the best is kept (default 2)")
    p.add_argument("--rss-sizes", default="2000,20000",
                   help="image counts for the peak-RSS runs, comma-separated (default 2000,20000; 0 skips)")
    p.add_argument("--dir", help="where to put the generated JPEGs and betons (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")


# ---------------------------------------------------------------------------------------------------
# Realistic JPEGs from real photographs

def _photos():
    import numpy as np
    import skimage.data as sk
    from sklearn.datasets import load_sample_images

    out = list(load_sample_images().images)
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina"):
        out.append(getattr(sk, name)())
    out.append(sk.stereo_motorcycle()[0])
    return [np.ascontiguousarray(p[..., :3]) for p in out]


def _make_jpegs(args: tuple) -> None:
    """Crops of the photographs (at least half of each side), resized to ~500x375 (1 in 8 portrait), q90."""
    import numpy as np
    from PIL import Image

    folder, start, stop, seed = args
    photos = _photos()
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])
        src = photos[int(rng.integers(len(photos)))]
        w, h = (375, 500) if i % 8 == 7 else (500, 375)
        w, h = int(w * rng.uniform(0.9, 1.0)), int(h * rng.uniform(0.9, 1.0))
        sh, sw = src.shape[:2]
        ch = int(min(sh, sw * h / w) * rng.uniform(0.5, 1.0))
        cw = int(ch * w / h)
        y, x = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
        img = Image.fromarray(src[y: y + ch, x: x + cw]).resize((w, h), Image.BICUBIC)
        img.save(Path(folder) / f"{i:06d}.jpg", "JPEG", quality=90)


def make_jpegs(folder: Path, n: int, workers: int, seed: int = 0) -> List[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.jpg" for i in range(n)]
    todo = [i for i, name in enumerate(names) if not (folder / name).exists()]
    if todo:
        step = max(1, -(-len(todo) // (4 * workers)))
        jobs = [(str(folder), todo[0] + k, min(todo[0] + k + step, n), seed) for k in range(0, n - todo[0], step)]
        with mp.get_context("spawn").Pool(workers) as pool:
            pool.map(_make_jpegs, jobs)
    return names


# ---------------------------------------------------------------------------------------------------
# One measurement, in a fresh child process

def _vm_rss_kb() -> int:
    with open("/proc/self/status") as fp:
        return next(int(line.split()[1]) for line in fp if line.startswith("VmRSS:"))


class _Files:
    """An indexable dataset of (RGB array, label) for ffcv's own writer: what a bare ffcv user writes."""

    def __init__(self, folder: str, names: Sequence[str]):
        self.folder, self.names = folder, list(names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        import numpy as np
        from PIL import Image

        with Image.open(os.path.join(self.folder, self.names[i])) as im:
            return np.asarray(im.convert("RGB")), i % 10


def _child(kind: str, folder: str, names: List[str], n: int, workers: int, max_res: int, quality: int,
           out: str, result: str) -> None:
    os.environ.setdefault("FFCV_SSL_NO_PROGRESS", "1")
    # a spawned child inherits 'spawn' as its default start method; ffcv's writer uses the default, and a
    # plain script on Linux gets 'fork': restore it, or the baseline pays a full re-import per worker
    mp.set_start_method("fork", force=True)
    import numpy as np

    paths = [names[i % len(names)] for i in range(n)]
    if kind == "ours":
        from dataset_writers.records import FileImages, SplitIndex
        from dataset_writers.write import ImageOptions, write_split

        index = SplitIndex("bench", "jpegs", np.arange(n), np.arange(n) % 10, [str(c) for c in range(10)],
                           FileImages(Path(folder), paths))
        image = ImageOptions(max_resolution=max_res, write_mode="jpg", jpeg_quality=quality)
        before = _vm_rss_kb()
        t0 = time.perf_counter()
        write_split(index, Path(out), image=image, workers=workers, overwrite=True)
    else:
        from ffcv.fields import IntField, RGBImageField
        from ffcv.writer import DatasetWriter

        fields = {"image": RGBImageField(write_mode="jpg", max_resolution=max_res, jpeg_quality=quality),
                  "label": IntField()}
        before = _vm_rss_kb()
        t0 = time.perf_counter()
        DatasetWriter(out, fields, num_workers=workers).from_indexed_dataset(_Files(folder, paths), chunksize=100)
    seconds = time.perf_counter() - t0
    Path(result).write_text(json.dumps({
        "kind": kind, "images": n, "seconds": seconds, "images_per_s": n / seconds,
        "rss_before_write_mib": before / 1024,
        "peak_rss_writer_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_worker_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "beton_mib": os.path.getsize(out) / 2**20,
    }))


def measure(kind: str, folder: Path, names: List[str], n: int, workers: int, max_res: int, quality: int,
            work: Path) -> Dict[str, Any]:
    """Run one write in a fresh (spawned) process, so imports, caches and memory start equal."""
    from ..errors import UserError

    out, result = work / f"{kind}_{n}.beton", work / f"{kind}_{n}.json"
    proc = mp.get_context("spawn").Process(
        target=_child, args=(kind, str(folder), names, n, workers, max_res, quality, str(out), str(result)))
    proc.start()
    proc.join()
    if proc.exitcode != 0 or not result.exists():
        raise UserError(f"bench write: the {kind} run on {n} images failed (exit code {proc.exitcode})")
    data = json.loads(result.read_text())
    out.unlink(missing_ok=True)
    result.unlink(missing_ok=True)
    return data


@register_bench("write", help="images/s of our writer vs bare ffcv DatasetWriter on real JPEGs; peak RSS at 2k/20k")
def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..console import console
    from ..errors import UserError
    from ..util import cpu_budget

    workers = args.workers or cpu_budget()
    sizes = [int(s) for s in str(args.rss_sizes).split(",") if s.strip() and int(s) > 0]
    if args.images < 100:
        raise UserError(f"--images {args.images}: use at least 100 images for a meaningful rate")
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ffcv_ssl_bench_write_"))
    folder, work = base / "jpegs", base / "work"
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        names = make_jpegs(folder, args.images, workers)
        console.print(f"{len(names)} JPEGs in {folder} ({sum((folder / n).stat().st_size for n in names) / 2**20:.0f} "
                      f"MiB, made in {time.perf_counter() - t0:.0f} s); {workers} workers; max side "
                      f"{args.max_resolution}, q{args.jpeg_quality}")
        runs: Dict[str, List[Dict[str, Any]]] = {"ours": [], "ffcv": []}
        for r in range(args.repeats):
            for kind in (("ours", "ffcv") if r % 2 == 0 else ("ffcv", "ours")):
                runs[kind].append(measure(kind, folder, names, len(names), workers, args.max_resolution,
                                          args.jpeg_quality, work))
                console.print(f"  run {r + 1} {kind}: {runs[kind][-1]['images_per_s']:,.0f} img/s")
        best = {k: max(v, key=lambda d: d["images_per_s"]) for k, v in runs.items()}
        overhead = 1.0 - best["ours"]["images_per_s"] / best["ffcv"]["images_per_s"]
        rss = {str(n): measure("ours", folder, names, n, workers, args.max_resolution, args.jpeg_quality, work)
               for n in sizes}
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(base, ignore_errors=True)

    table = Table(title=f"bench write: {len(names)} real JPEGs (~500x375 q90), {workers} workers, best of "
                        f"{args.repeats}")
    for col in ("writer", "images/s", "seconds", "beton MiB", "peak RSS writer MiB", "peak RSS worker MiB"):
        table.add_column(col, justify="right" if col != "writer" else "left")
    for kind, label in (("ours", "ffcv-ssl write_split"), ("ffcv", "bare ffcv DatasetWriter")):
        b = best[kind]
        table.add_row(label, f"{b['images_per_s']:,.0f}", f"{b['seconds']:.1f}", f"{b['beton_mib']:.1f}",
                      f"{b['peak_rss_writer_mib']:,.0f}", f"{b['peak_rss_worker_mib']:,.0f}")
    console.print(table)
    verdict = "[green]within[/]" if overhead <= 0.10 else "[red]above[/]"
    console.print(f"our overhead vs bare ffcv: {overhead * 100:+.1f}% of its images/s ({verdict} the 10% target)")
    if rss:
        mem = Table(title="peak memory of our writer (fresh process per size)")
        for col in ("images", "images/s", "RSS before write MiB", "peak RSS writer MiB", "growth MiB",
                    "peak RSS worker MiB"):
            mem.add_column(col, justify="right")
        for n, d in rss.items():
            mem.add_row(f"{int(n):,}", f"{d['images_per_s']:,.0f}", f"{d['rss_before_write_mib']:,.0f}",
                        f"{d['peak_rss_writer_mib']:,.0f}",
                        f"{d['peak_rss_writer_mib'] - d['rss_before_write_mib']:,.0f}",
                        f"{d['peak_rss_worker_mib']:,.0f}")
        console.print(mem)
    if args.json:
        result = {"bench": "write", "images": len(names), "workers": workers, "max_resolution": args.max_resolution,
                  "jpeg_quality": args.jpeg_quality, "repeats": args.repeats, "runs": runs, "best": best,
                  "overhead_fraction": overhead, "rss": rss, "cpus": cpu_budget()}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        console.print(f"results in [bold]{args.json}[/]")
    return 0
