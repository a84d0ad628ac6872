"""``ffcv-ssl bench loader``: ours against stock ffcv, torchvision and plain JPEG decoding, in one run.

What it measures: on a beton of ImageNet-like JPEGs (~500x375, q90) and on a <=256-px one, with the
full SimCLR recipe at 224 px and two views, samples/s of every contender (``_baselines.py``) with the
same number of worker threads/processes, as the median of ``--epochs`` epochs after a warm-up (compile)
epoch. Contenders run in separate processes and their epochs are interleaved round robin, so load from
other programs on a shared machine hits all of them alike; samples per CPU-second are reported too, as
a load-robust cross-check. Slow baselines measure a nested subset of the images per epoch (the same
images for everyone, fewer of them) so that the run fits in minutes.

Both modes of ours are measured: CPU-complete (``ours``: every op on the host) and GPU split
(``ours_split``: the host decodes and crops, the colour runs on the GPU), each with its host CPU-ms per
sample and the host cores it needs per 5,000 views/s. The decode ceiling is also given with
libjpeg-turbo's DCT scaling where ours may use it, and with every JPEG at 1/2 scale.

Also: views/s per core of ours at 160/192/224 px and 1/2/4 views (``--sweep``), where ours' time goes
(``--breakdown``: augmentations switched off one after another), and ours' peak RSS next to
``ViewLoader.memory_formula()`` (RSS sampled inside ours' process). Results: a rich table on
stdout and, with ``--json``, a JSON document (schema ``SCHEMA``). ``docs/loading.md`` explains the numbers.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import UserError
from ..files import atomic_write_text
from . import register_bench

SCHEMA = "ffcv-ssl/bench-loader/1"
MAIN = ("ours", "ours_split", "ffcv", "tv_v2", "tv_pil", "decode", "decode_dct", "decode_half", "ours_finish")
BASELINES = ("ffcv", "tv_v2", "tv_pil", "decode", "decode_dct", "decode_half")
MODES = ("ours", "ours_split")          # CPU-complete and GPU-split mode: each gets ratios and host costs
# the loader's speed targets on the ~500-px beton (docs/performance.md): mode >= target x baseline
TARGETS = {"ours/ffcv": 5.0, "ours/tv_v2": 20.0, "ours/tv_pil": 6.0, "ours/decode": 0.6, "ours_split/decode": 0.7}
TARGET_SIDE = 500
VIEWS_PER_S_GOAL = 5000.0               # "host cores per 5,000 views/s": a GPU's SimCLR appetite
# fraction of --images each contender loads per epoch (slow baselines measure a nested subset)
SHARES = {"ours": 1.0, "ours_split": 1.0, "decode": 1.0, "decode_dct": 1.0, "decode_half": 1.0,
          "ours_finish": 0.5, "ffcv": 0.5, "tv_pil": 0.25, "tv_v2": 0.125}
SWEEP = ((160, 2), (192, 2), (224, 2), (224, 1), (224, 4))
SWEEP_SHARE = 0.5
# --breakdown: ours with one augmentation after another switched off; differences = cost of each
BREAKDOWN: Tuple[Tuple[str, Tuple[Tuple[str, object], ...]], ...] = (
    ("SimCLR", ()),
    ("hue off", (("jitter", (0.8, 0.8, 0.8, 0.0)),)),
    ("jitter off", (("jitter_p", 0.0),)),
    ("jitter, blur off", (("jitter_p", 0.0), ("blur_p", 0.0))),
    ("crop+resize+flip only", (("jitter_p", 0.0), ("blur_p", 0.0), ("gray_p", 0.0))),
)
READY_TIMEOUT_S = 1200.0    # setup + warm-up (compiling stock ffcv takes minutes on a busy 2-core machine)
EPOCH_TIMEOUT_S = 600.0     # a hung loader thread must not hang the benchmark


@dataclass(frozen=True)
class Settings:
    images: int
    epochs: int
    workers: int
    batch_size: int
    data_dir: str
    seed: int
    sweep: bool
    quick: bool
    breakdown: bool = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", type=int, default=None, help="images per beton (default 2048; --quick: 512)")
    p.add_argument("--epochs", type=int, default=None, help="measured epochs after the warm-up (default 3; quick: 2)")
    p.add_argument("--workers", type=int, default=0,
                   help="threads/processes for every contender (default 0: the CPUs of the affinity mask)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per batch (default 128; --quick: 64)")
    p.add_argument("--data-dir", default="runs/bench/loader-data", help="cache of the generated photos and betons")
    p.add_argument("--json", default=None, help="write the results as JSON to this path")
    p.add_argument("--seed", type=int, default=0, help="seed of the images, the subsets and the augmentations")
    p.add_argument("--sweep", action="store_true", help="also measure ours at 160/192/224 px and 1/2/4 views")
    p.add_argument("--breakdown", action="store_true",
                   help="also measure ours with hue, jitter, blur, grayscale switched off one after another")
    p.add_argument("--quick", action="store_true", help="small settings (~1-2 min): 512 images, 2 epochs")


def resolve_settings(args: argparse.Namespace) -> Settings:
    """Defaults (full or ``--quick``) for unset options, then a check of every value before any work."""
    from ..util import cpu_budget

    quick = bool(getattr(args, "quick", False))
    def given(value, default):
        return default if value is None else int(value)

    s = Settings(images=given(args.images, 512 if quick else 2048), epochs=given(args.epochs, 2 if quick else 3),
                 workers=args.workers or cpu_budget(), batch_size=given(args.batch_size, 64 if quick else 128),
                 data_dir=str(args.data_dir), seed=int(args.seed), sweep=bool(args.sweep), quick=quick,
                 breakdown=bool(getattr(args, "breakdown", False)))
    if s.workers < 1 or s.epochs < 1 or s.batch_size < 1:
        raise UserError("--workers, --epochs and --batch-size must be >= 1")
    if s.images < s.batch_size:
        raise UserError(f"--images {s.images} must be at least --batch-size {s.batch_size}")
    if args.json and Path(args.json).is_dir():
        raise UserError(f"--json {args.json} is a directory; give a file name")
    return s


def epoch_samples(share: float, images: int, batch_size: int, workers: int) -> int:
    """Whole batches of ``share`` x ``images``, but at least one batch per worker (else workers idle)."""
    most = images // batch_size * batch_size
    return min(most, max(workers * batch_size, int(share * images) // batch_size * batch_size))


def epoch_subset(settings: "Settings", share: float) -> Tuple[int, ...]:
    """The positions one epoch loads: a prefix of one fixed permutation, so smaller subsets are nested."""
    n = epoch_samples(share, settings.images, settings.batch_size, settings.workers)
    order = np.random.default_rng([settings.seed, 7]).permutation(settings.images)
    return tuple(int(i) for i in np.sort(order[:n]))


# ---------------------------------------------------------------- pure arithmetic (tested) -------------

def summarise(epochs: Sequence[Dict]) -> Dict[str, Optional[float]]:
    """Median samples/s and samples per CPU-second over measured epochs (``samples``, ``seconds``, ``cpu_seconds``)."""
    if not epochs:
        return {"samples_per_s": None, "samples_per_cpu_s": None}
    rates = [e["samples"] / e["seconds"] for e in epochs]
    cpu = [e["samples"] / e["cpu_seconds"] for e in epochs if e.get("cpu_seconds")]
    return {"samples_per_s": statistics.median(rates),
            "samples_per_cpu_s": statistics.median(cpu) if cpu else None}


def ratios(methods: Dict[str, Dict], metric: str = "samples_per_s") -> Dict[str, Optional[float]]:
    """``<mode>/<baseline>`` for both modes of ours and every baseline present: the mode's median rate over
    the baseline's (None if either failed or was not run)."""
    out: Dict[str, Optional[float]] = {}
    for mode in MODES:
        if mode not in methods:
            continue
        ours = (methods.get(mode) or {}).get(metric)
        for key in BASELINES:
            if key not in methods:
                continue
            other = (methods.get(key) or {}).get(metric)
            out[f"{mode}/{key}"] = ours / other if ours and other else None
    return out


def judge(ratio: Dict[str, Optional[float]]) -> Dict[str, Dict]:
    """The targets: ``{"ours/ffcv": {"target": 5.0, "value": r, "met": r >= 5.0}, ...}``."""
    out = {}
    for key, target in TARGETS.items():
        value = ratio.get(key)
        out[key] = {"target": target, "value": value, "met": value is not None and value >= target}
    return out


def host_cost(method: Dict, views: int) -> Dict[str, Optional[float]]:
    """Host CPU-ms per sample and host cores needed per 5,000 views/s, from samples per CPU-second
    (user + system time of every thread of the contender: the load-robust per-core rate)."""
    cpu = method.get("samples_per_cpu_s")
    if not cpu:
        return {"cpu_ms_per_sample": None, "cores_per_5000_views_s": None}
    return {"cpu_ms_per_sample": 1e3 / cpu, "cores_per_5000_views_s": VIEWS_PER_S_GOAL / (views * cpu)}


def memory_summary(facts: Dict, batches_per_epoch: int) -> Dict:
    """Ours' measured memory next to its formula; measured = peak anonymous RSS during the measured
    epochs minus the anonymous RSS when idle after the warm-up epoch (ffcv allocates the output slots at
    every epoch start and frees them at its end; compiled code and the memory map stay)."""
    formula = facts["memory_formula"]
    rss = facts.get("rss")
    out: Dict = {"formula": formula, "batches_per_epoch": batches_per_epoch}
    if rss:
        measured = rss["peak_during_epochs"]["RssAnon"] - rss["idle_after_warmup"]["RssAnon"]
        out.update({"measured_bytes": measured, "measured_over_formula": measured / formula["total"],
                    "peak_rss_bytes": rss["peak_during_epochs"]["VmRSS"],
                    "peak_rss_delta_bytes": rss["peak_during_epochs"]["VmRSS"] - rss["after_imports"]["VmRSS"],
                    "rss": rss})
    pinned = facts.get("pinned")
    out["pinned"] = {"measured_bytes": pinned, "buffer_bytes": formula["view_buffers"] + formula["labels"],
                     "note": ("measured with torch.cuda.host_memory_stats()" if pinned is not None else
                              "no CUDA here: ffcv pins its output slots only when CUDA is available, so nothing "
                              "is page-locked on this machine; buffer_bytes is what would be pinned")}
    return out


# ---------------------------------------------------------------- running contenders ---------------------

def _fork_context():
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


class _Child:
    def __init__(self, key: str, task, ctx):
        from ._baselines import serve

        self.key = key
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(task, child), name=f"bench-{key}")
        self.proc.start()
        child.close()

    def ask(self, message: Optional[Tuple], timeout: float = EPOCH_TIMEOUT_S) -> Tuple[str, object]:
        if message is not None:
            self.conn.send(message)
        if not self.conn.poll(timeout):
            return "error", f"no answer within {timeout:.0f} s"
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            return "error", f"process died (exit code {self.proc.exitcode})"

    def stop(self) -> None:
        self.proc.join(timeout=60)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=10)


def run_phase(title: str, tasks: Dict[str, object], epochs: int, parallel_setup: int = 2) -> Dict:
    """Start every contender (setup + warm-up epoch, ``parallel_setup`` at a time: compiling is single
    threaded), then ``epochs`` rounds in which each contender runs one epoch while the others wait."""
    from multiprocessing.connection import wait

    from ..console import console, progress_bar
    from ._baselines import LABELS, Outcome

    ctx = _fork_context()
    outcomes = {key: Outcome() for key in tasks}
    children: Dict[str, _Child] = {}
    created: List[_Child] = []
    load = []
    try:
        pending, starting = list(tasks), {}
        while pending or starting:
            while pending and len(starting) < max(1, parallel_setup):
                key = pending.pop(0)
                starting[key] = _Child(key, tasks[key], ctx)
                created.append(starting[key])
            done = wait([c.conn for c in starting.values()], timeout=READY_TIMEOUT_S)
            if not done:
                for key in starting:
                    outcomes[key].error = f"not ready within {READY_TIMEOUT_S:.0f} s"
                    starting[key].stop()
                starting = {}
                continue
            for key in [k for k, c in starting.items() if c.conn in done]:
                child = starting.pop(key)
                kind, payload = child.ask(None)
                label = f"{title}: {LABELS[tasks[key].kind]} [{key}]"
                if kind == "ready":
                    outcomes[key].ready = payload
                    children[key] = child
                    console.print(f"  {label} ready (setup {payload['setup_s']:.1f} s, "
                                  f"warm-up epoch {payload['warmup_s']:.1f} s)")
                else:
                    outcomes[key].error = str(payload)
                    console.print(f"  [red]{label} failed: {payload}[/]")
                    child.stop()
        keys = [k for k in tasks if k in children]     # the order of ``tasks``, rotated every round
        with progress_bar("now") as bar:
            job = bar.add_task(f"{title}: epochs", total=epochs * len(keys), now="")
            for r in range(epochs):
                for key in keys[r % max(1, len(keys)):] + keys[: r % max(1, len(keys))]:
                    if outcomes[key].error:
                        continue
                    bar.update(job, now=key)
                    kind, payload = children[key].ask(("epoch", r + 1))
                    if kind == "epoch":
                        payload["load1"] = os.getloadavg()[0]
                        outcomes[key].epochs.append(payload)
                    else:
                        outcomes[key].error = str(payload)
                    bar.advance(job)
                load.append(os.getloadavg())
        for key, child in children.items():
            if outcomes[key].error is None:
                kind, payload = child.ask(("close", None))
                if kind == "closed":
                    outcomes[key].facts = payload
                else:
                    outcomes[key].error = str(payload)
    finally:
        for child in created:
            child.stop()
    return {"outcomes": outcomes, "load": load}


def _method_record(key: str, outcome, samples: int) -> Dict:
    from ._baselines import DESCRIPTIONS, LABELS

    rec = {"label": LABELS[key], "description": DESCRIPTIONS[key], "samples_per_epoch": samples, **outcome.ready,
           "epochs": outcome.epochs,   # unrounded: every summary can be recomputed exactly from these
           **summarise(outcome.epochs), "error": outcome.error}
    return rec


def _load_record(samples: List[Tuple[float, float, float]]) -> Dict:
    if not samples:
        return {}
    one = [s[0] for s in samples]
    return {"load1_mean": round(float(np.mean(one)), 2), "load1_max": round(float(np.max(one)), 2),
            "load1_min": round(float(np.min(one)), 2)}


def _machine(settings: Settings) -> Dict:
    info: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fp:
            for line in fp:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = f"{info.get('model name', '')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
    versions = {}
    for mod in ("torch", "torchvision", "ffcv", "numba", "numpy", "PIL"):
        try:
            versions[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            versions[mod] = None
    from ..util import cpu_budget

    return {"cpu": model, "cpus_in_affinity_mask": cpu_budget(), "os_cpus": os.cpu_count(),
            "python": platform.python_version(), "versions": versions}


def measure_beton(side: int, data, settings: Settings) -> Tuple[Dict, Optional[Dict]]:
    """Every contender on the beton of ``side`` px; returns its JSON record and ours' memory facts."""
    from ._baselines import Task

    beton = str(data.betons[side])
    files = tuple(str(p) for p in data.files[side])
    base = Task(kind="", beton=beton, files=files, labels=tuple(data.labels), indices=(),
                workers=settings.workers, batch_size=settings.batch_size, seed=settings.seed)
    tasks, samples = {}, {}
    for key in MAIN:
        subset = epoch_subset(settings, SHARES[key])
        samples[key] = len(subset)
        tasks[key] = replace(base, kind=key, indices=subset, measure_memory=(key == "ours" and side == TARGET_SIDE))
    phase = run_phase(f"{side} px", tasks, settings.epochs, max(2, settings.workers))
    methods = {key: _method_record(key, phase["outcomes"][key], samples[key]) for key in MAIN}
    for key in MODES:
        methods[key]["host"] = host_cost(methods[key], base.views)
    for key in ("decode_dct", "decode_half"):
        methods[key]["half_scale_fraction"] = phase["outcomes"][key].facts.get("half_scale_fraction")
    ratio = ratios(methods)
    record = {"beton": beton, "jpeg_dir": str(Path(files[0]).parent.parent), "stats": data.stats[str(side)],
              "methods": methods, "ratios": ratio, "cpu_ratios": ratios(methods, "samples_per_cpu_s"),
              "targets": judge(ratio) if side == TARGET_SIDE else None, "load": _load_record(phase["load"])}
    facts = phase["outcomes"]["ours"].facts
    return record, (memory_summary(facts, samples["ours"] // settings.batch_size) if facts else None)


def measure_sweep(data, settings: Settings) -> Dict:
    """Ours on the 500-px beton at 160/192/224 px (2 views) and 1/2/4 views (224 px)."""
    from ._baselines import Task

    subset = epoch_subset(settings, SWEEP_SHARE)
    n = len(subset)
    tasks = {f"{size}px-{views}v": Task(kind="ours", beton=str(data.betons[TARGET_SIDE]), files=(), labels=(),
                                        indices=subset, workers=settings.workers, batch_size=settings.batch_size,
                                        size=size, views=views, seed=settings.seed)
             for size, views in SWEEP}
    phase = run_phase("sweep", tasks, settings.epochs, max(2, settings.workers))
    rows = []
    for (size, views), key in zip(SWEEP, tasks):
        out = phase["outcomes"][key]
        s = summarise(out.epochs)
        rate, cpu_rate = s["samples_per_s"], s["samples_per_cpu_s"]
        rows.append({"size": size, "views": views, "samples_per_epoch": n, "samples_per_s": rate,
                     "views_per_s": rate * views if rate else None,
                     "views_per_s_per_core": rate * views / settings.workers if rate else None,
                     "views_per_cpu_s": cpu_rate * views if cpu_rate else None,
                     "epochs": out.epochs, "error": out.error, **out.ready})
    return {"rows": rows, "load": _load_record(phase["load"])}


def measure_breakdown(data, settings: Settings) -> Dict:
    """Ours on the 500-px beton with augmentations switched off one after another (where the time goes)."""
    from ._baselines import Task

    subset = epoch_subset(settings, SWEEP_SHARE)
    n = len(subset)
    tasks = {name: Task(kind="ours", beton=str(data.betons[TARGET_SIDE]), files=(), labels=(), indices=subset,
                        workers=settings.workers, batch_size=settings.batch_size, seed=settings.seed, recipe=recipe)
             for name, recipe in BREAKDOWN}
    phase = run_phase("breakdown", tasks, settings.epochs, max(2, settings.workers))
    rows = []
    for name, recipe in BREAKDOWN:
        out = phase["outcomes"][name]
        s = summarise(out.epochs)
        cpu = s["samples_per_cpu_s"]
        rows.append({"variant": name, "overrides": {k: v for k, v in recipe}, "samples_per_epoch": n, **s,
                     "cpu_ms_per_sample": 1e3 / cpu if cpu else None, "epochs": out.epochs, "error": out.error,
                     **out.ready})
    return {"rows": rows, "load": _load_record(phase["load"])}


# ---------------------------------------------------------------- report -----------------------------------

def _fmt(x: Optional[float], digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def print_report(doc: Dict) -> None:
    from rich.table import Table

    from rich.console import Console

    from ..console import console

    if not console.is_terminal:       # files and pipes: wide enough for the table, not 80 columns
        console = Console(highlight=False, width=140)
    st = doc["settings"]
    t = Table(title=f"bench loader: SimCLR, 2 views x 224 px, {st['workers']} workers, batch {st['batch_size']}; "
                    f"samples/s = median of {st['epochs']} epochs after a warm-up")
    t.add_column("contender")
    sides = list(doc["betons"])
    for side in sides:
        t.add_column(f"{side} px\nsamples/s", justify="right")
        t.add_column(f"{side} px\nper CPU-s", justify="right")
        t.add_column(f"{side} px\nours/this", justify="right")
    t.add_column(f"target\n({TARGET_SIDE} px)")
    for key in MAIN:
        row = [doc["betons"][sides[0]]["methods"][key]["label"]]
        for side in sides:
            rec = doc["betons"][side]
            m = rec["methods"][key]
            if m["error"]:
                row += ["[red]failed[/]", "", ""]
                continue
            r = rec["ratios"].get(f"ours/{key}")
            row += [_fmt(m["samples_per_s"]), _fmt(m["samples_per_cpu_s"]), _fmt(r, 2) + ("x" if r else "")]
        goal = (doc["betons"].get(str(TARGET_SIDE), {}).get("targets") or {}).get(f"ours/{key}")
        row.append("" if goal is None else
                   f">= {goal['target']:g}x " + ("[green]met[/]" if goal["met"] else "[red]not met[/]"))
        t.add_row(*row)
    console.print(t)
    for key in MAIN:
        console.print(f"  {doc['betons'][sides[0]]['methods'][key]['label']}: "
                      f"{doc['betons'][sides[0]]['methods'][key]['description']}")
    for side in sides:
        for key, m in doc["betons"][side]["methods"].items():
            if m["error"]:
                console.print(f"[red]{side} px {key}: {m['error']}[/]")
    h = Table(title="host cost per mode (CPU-complete: every op on the host; GPU split: the host decodes, crops, "
                    "resizes, flips; colour, grayscale, blur run on the GPU)")
    for col in ("mode", "beton", "host CPU-ms / sample", "host cores per 5,000 views/s", "mode / decode ceiling"):
        h.add_column(col, justify="left" if col in ("mode", "beton") else "right")
    for key in MODES:
        for side in sides:
            m = doc["betons"][side]["methods"][key]
            cost = m.get("host") or {}
            r = doc["betons"][side]["ratios"].get(f"{key}/decode")
            h.add_row(m["label"], f"{side} px", _fmt(cost.get("cpu_ms_per_sample"), 2),
                      _fmt(cost.get("cores_per_5000_views_s"), 1), _fmt(r, 2) + ("x" if r else ""))
    console.print(h)
    split_goal = (doc["betons"].get(str(TARGET_SIDE), {}).get("targets") or {}).get("ours_split/decode")
    if split_goal:
        console.print(f"  GPU split / decode ceiling at {TARGET_SIDE} px: {_fmt(split_goal['value'], 2)}x, target "
                      f">= {split_goal['target']:g}x: " + ("[green]met[/]" if split_goal["met"] else "[red]not met[/]"))
    for side in sides:
        m = doc["betons"][side]["methods"]
        fr = m.get("decode_dct", {}).get("half_scale_fraction")
        if fr is not None:
            console.print(f"  {side} px: ours' rule allows the 1/2 DCT decode for {100 * fr:.1f}% of the samples "
                          f"(SimCLR, 2 x 224 px); ours/(d2) {_fmt(doc['betons'][side]['ratios'].get('ours/decode_dct'), 2)}x, "
                          f"ours/(d3) {_fmt(doc['betons'][side]['ratios'].get('ours/decode_half'), 2)}x")
    if doc.get("sweep"):
        s = Table(title=f"ours on the 500-px beton, {st['workers']} workers: views/s per core")
        for col in ("size", "views", "samples/s", "views/s", "views/s per core", "views per CPU-s"):
            s.add_column(col, justify="right")
        for r in doc["sweep"]["rows"]:
            s.add_row(str(r["size"]), str(r["views"]), _fmt(r["samples_per_s"]), _fmt(r["views_per_s"]),
                      _fmt(r["views_per_s_per_core"]), _fmt(r["views_per_cpu_s"]))
        console.print(s)
    if doc.get("breakdown"):
        rows = doc["breakdown"]["rows"]
        b = Table(title="where ours' time goes (500-px beton, 2 views x 224 px): CPU ms per sample, "
                        "augmentations switched off one after another")
        for col in ("variant", "samples/s", "CPU ms / sample", "difference to the row above"):
            b.add_column(col, justify="right" if col != "variant" else "left")
        prev = None
        for r in rows:
            ms = r["cpu_ms_per_sample"]
            diff = "" if prev is None or ms is None else f"{prev - ms:.2f} ms"
            b.add_row(r["variant"], _fmt(r["samples_per_s"]), _fmt(ms, 2), diff)
            prev = ms
        console.print(b)
    mem = doc.get("memory")
    if mem:
        mib = 1 << 20
        f = mem["formula"]
        m = Table(title="ours' memory (500-px beton) vs ViewLoader.memory_formula()")
        m.add_column("what")
        m.add_column("MiB", justify="right")
        m.add_row("formula: view buffers (batches_ahead+2) x B x V x H x W x 3", _fmt(f["view_buffers"] / mib, 1))
        m.add_row("formula: decode scratch (per thread, by max area)", _fmt(f["decode_scratch"] / mib, 1))
        m.add_row("formula: total", _fmt(f["total"] / mib, 1))
        if "measured_bytes" in mem:
            m.add_row("measured: peak anonymous RSS during epochs - idle after warm-up",
                      _fmt(mem["measured_bytes"] / mib, 1) + f"  ({mem['measured_over_formula']:.2f}x formula)")
            m.add_row("measured: peak RSS of the process (incl. compiled code, memory map)",
                      _fmt(mem["peak_rss_bytes"] / mib, 1))
            m.add_row("measured: peak RSS - RSS after imports", _fmt(mem["peak_rss_delta_bytes"] / mib, 1))
        p = mem["pinned"]
        real = p["measured_bytes"] is not None
        m.add_row("pinned (page-locked) " + ("measured" if real else "- none on CPU; would be"),
                  _fmt((p["measured_bytes"] if real else p["buffer_bytes"]) / mib, 1))
        console.print(m)
    loads = "; ".join(f"{k}: mean {v.get('load1_mean')} (max {v.get('load1_max')})"
                      for k, v in doc["load"].items() if v)
    console.print(f"load average (1 min) while measuring, on {doc['machine']['cpus_in_affinity_mask']} CPUs: {loads}")


@register_bench("loader", help="multi-view loader (CPU-complete and GPU split) vs stock ffcv, torchvision and "
                               "plain JPEG decoding")
def run(args: argparse.Namespace) -> int:
    from ..console import console
    from ._photos import build_bench_data

    settings = resolve_settings(args)
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    console.print(f"bench loader: building/reusing {settings.images} photo crops under {settings.data_dir}")
    data = build_bench_data(Path(settings.data_dir), settings.images, settings.seed)
    betons, memory = {}, None
    for side in (TARGET_SIDE, 256):
        betons[str(side)], mem = measure_beton(side, data, settings)
        memory = memory or mem
    sweep = measure_sweep(data, settings) if settings.sweep else None
    breakdown = measure_breakdown(data, settings) if settings.breakdown else None
    doc = {
        "schema": SCHEMA,
        "command": shlex.join(["ffcv-ssl", "bench", "loader", *_argv_tail()]),
        "settings": {**asdict(settings), "views": 2, "size": 224, "recipe": "SimCLR (ViewConfig defaults)",
                     "warmup_epochs": 1, "shares": SHARES},
        "machine": _machine(settings),
        "data": {"root": str(data.root), **data.stats},
        "betons": betons,
        "sweep": sweep,
        "breakdown": breakdown,
        "memory": memory,
        "load": {"start": _load_record([load_start]), **{f"{s} px": b["load"] for s, b in betons.items()},
                 **({"sweep": sweep["load"]} if sweep else {}),
                 **({"breakdown": breakdown["load"]} if breakdown else {}), "end": _load_record([os.getloadavg()])},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print_report(doc)
    if args.json:
        atomic_write_text(args.json, json.dumps(doc, indent=1, default=float))
        console.print(f"wrote {args.json}")
    failed = [f"{s}/{k}" for s, b in betons.items() for k, m in b["methods"].items() if m["error"]]
    failed += [f"sweep/{r['size']}px-{r['views']}v" for r in (sweep or {}).get("rows", []) if r["error"]]
    failed += [f"breakdown/{r['variant']}" for r in (breakdown or {}).get("rows", []) if r["error"]]
    return 1 if failed else 0


def _argv_tail() -> List[str]:
    argv = sys.argv[1:]
    return argv[argv.index("loader") + 1:] if "loader" in argv else argv
