"""Peak memory of feature extraction into a cache and of probes that read it memory-mapped.

Usage (from the repository root)::

    python benchmarks/probe_memory.py [--rows 200000] [--width 2048] [--classes 100] [--out /tmp/probe_memory]

Each stage runs in a fresh child process, which samples its own ``/proc/self/status`` while it works and
reports the peak RSS split into anonymous memory (what the process allocated) and file-backed pages (the
memory-mapped cache, i.e. the page cache shared with every other reader), plus ``ru_maxrss``. The claim to
check: a probe over N x D fp16 features never holds more than one copy of them, i.e. peak
anonymous memory stays far below N x D x 2 bytes and the file-backed part is at most the cache itself.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MB = 1 << 20


def _status() -> dict:
    """RSS parts of this process in bytes, from /proc/self/status (Linux)."""
    out = {}
    with open("/proc/self/status") as fp:
        for line in fp:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) * 1024
    return out


class PeakSampler:
    """Samples this process's RSS parts every ``interval`` seconds in a thread; keeps the maxima."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak, self._stop = interval, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for k, v in _status().items():
                self.peak[k] = max(self.peak.get(k, 0), v)
            time.sleep(self.interval)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for k, v in _status().items():
            self.peak[k] = max(self.peak.get(k, 0), v)


def _report(peak: dict) -> dict:
    return {"peak_rss_mb": round(peak.get("VmRSS", 0) / MB, 1), "peak_anon_mb": round(peak.get("RssAnon", 0) / MB, 1),
            "peak_file_mb": round(peak.get("RssFile", 0) / MB, 1),
            "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def stage_baseline(args, queue) -> None:
    import numpy  # noqa: F401
    import torch  # noqa: F401

    from ffcv_ssl.evaluation import linear  # noqa: F401

    queue.put({"stage": "baseline (imports only)", **_report(_status())})


def _synthetic(n_rows, width, classes, seed, batch, signal):
    """Batches of post-ReLU-like features with a weak class signal (centres shared across splits)."""
    import numpy as np

    centres = np.random.default_rng(1234).normal(size=(classes, width)).astype(np.float32) * signal
    rng = np.random.default_rng(seed)
    for start in range(0, n_rows, batch):
        stop = min(start + batch, n_rows)
        y = rng.integers(0, classes, stop - start)
        x = np.maximum(centres[y] + rng.normal(size=(stop - start, width)).astype(np.float32), 0)
        yield start, stop, x, y


def stage_write(args, queue) -> None:
    import hashlib

    import numpy as np

    from ffcv_ssl.evaluation.cache import FeatureCacheWriter

    for split, rows, seed in (("train", args.rows, 0), ("test", args.test_rows, 1)):
        t0 = time.perf_counter()
        with PeakSampler() as sampler:
            digest = hashlib.sha256(split.encode()).hexdigest()
            with FeatureCacheWriter(Path(args.out) / split, count=rows, width=args.width, checkpoint_sha256="c" * 64,
                                    beton_sha256=digest, arch="resnet50", pipeline={"synthetic": True}) as w:
                for start, stop, x, y in _synthetic(rows, args.width, args.classes, seed, 1024, args.signal):
                    w.add(x, y, np.arange(start, stop))
        queue.put({"stage": f"write {split} cache ({rows} x {args.width} fp16, "
                            f"{rows * args.width * 2 / MB:.0f} MB)", **_report(sampler.peak),
                   "seconds": round(time.perf_counter() - t0, 1)})


def stage_linear(args, queue) -> None:
    from ffcv_ssl.evaluation.cache import FeatureCache
    from ffcv_ssl.evaluation.linear import LinearProbeConfig, linear_probe

    train, test = FeatureCache.open(Path(args.out) / "train"), FeatureCache.open(Path(args.out) / "test")
    cfg = LinearProbeConfig(device="cpu", weight_decays=tuple(args.weight_decays), max_iter=args.max_iter,
                            patience=0)
    t0 = time.perf_counter()
    with PeakSampler() as sampler:
        result = linear_probe(train.features, train.labels, test.features, test.labels, num_classes=args.classes,
                              config=cfg)
    queue.put({"stage": f"linear probe (L-BFGS, {len(cfg.weight_decays)} wd x <= {cfg.max_iter} it + final fit)",
               **_report(sampler.peak), "seconds": round(time.perf_counter() - t0, 1),
               "top1": round(result.top1, 4), "top5": round(result.topk, 4), "chance": round(1 / args.classes, 4),
               "chosen_wd": result.weight_decay, "heldout_top1": [round(a, 4) for a in result.selection.heldout_top1],
               "final_fit_evaluations": result.model.evaluations,
               "timings": {k: round(v, 1) for k, v in result.seconds.items()},
               "budget": int(len(result.train_positions)), "features_fp16_mb": round(train.features.nbytes / MB, 1)})


def stage_knn(args, queue) -> None:
    from ffcv_ssl.evaluation.cache import FeatureCache
    from ffcv_ssl.evaluation.knn import KnnConfig, knn_probe

    train, test = FeatureCache.open(Path(args.out) / "train"), FeatureCache.open(Path(args.out) / "test")
    t0 = time.perf_counter()
    with PeakSampler() as sampler:
        result = knn_probe(train.features, train.labels, test.features[: args.knn_queries],
                           test.labels[: args.knn_queries], num_classes=args.classes, config=KnnConfig(device="cpu"))
    queue.put({"stage": f"kNN (k=20, {args.knn_queries} queries)", **_report(sampler.peak),
               "seconds": round(time.perf_counter() - t0, 1), "top1": round(result.top1, 4)})


STAGES = {"baseline": stage_baseline, "write": stage_write, "linear": stage_linear, "knn": stage_knn}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--test-rows", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--signal", type=float, default=0.06,
                        help="scale of the class centres against unit noise (0.06: far from chance, far from 100%%)")
    parser.add_argument("--weight-decays", type=float, nargs="+", default=[1e-3, 1e-4],
                        help="a short grid: memory does not depend on it, time grows with it")
    parser.add_argument("--max-iter", type=int, default=15)
    parser.add_argument("--knn-queries", type=int, default=2000)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--out", default="/tmp/ffcv_ssl_probe_memory")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic caches")
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")         # fresh interpreters: no memory inherited from this one
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for name in args.stages:
            queue = ctx.Queue()
            proc = ctx.Process(target=STAGES[name], args=(args, queue))
            proc.start()
            proc.join()
            if proc.exitcode != 0:
                print(f"stage {name} failed with exit code {proc.exitcode}", file=sys.stderr)
                return 1
            while not queue.empty():
                results.append(queue.get())
                print(json.dumps(results[-1]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(args.out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
