"""The contenders of ``ffcv-ssl bench loader``, each run in its own process by ``serve``.

Every contender loads the same images with the same number of CPU threads/processes and delivers
what a training step would receive; only the work it does differs:

- ``ours``: ``ViewLoader`` with the SimCLR ``ViewConfig(count=2)``, uint8 ``(B, V, H, W, 3)`` batches;
  the finishing (float, normalise, channels_last) runs on the GPU in training, so it is not counted.
- ``ours_finish``: the same, iterated through ``ViewLoader``'s public API with the finishing on the CPU
  (what a CPU-only machine pays; reported, never used for the targets).
- ``ours_split``: GPU-split mode (``colour_on="device"``): the host decodes, crops, resizes and flips; the
  colour parameters travel beside the crops, and colour/grayscale/blur run on the GPU in training, so they
  are not counted: this is the host's share of the work.
- ``ffcv``: stock ffcv, one ``RandomResizedCropRGBImageDecoder`` pipeline per view with ffcv's own flip,
  brightness, contrast and saturation (p=0.8 each, SimCLR strength 0.8). ffcv has no hue, grayscale or
  blur, so this baseline does *less* work than the SimCLR recipe: it flatters the baseline, not us.
- ``tv_v2``: torchvision ``DataLoader`` over the JPEG files with the literal transforms v2 SimCLR recipe,
  applied twice to one decoded image.
- ``tv_pil``: the fastest faithful torchvision configuration found: PIL decode, one PIL
  ``resize(box=crop)`` for RandomResizedCrop, PIL flip, torchvision's PIL colour jitter, PIL grayscale,
  PIL's own ``ImageFilter.GaussianBlur``, a uint8 tensor only at the end (normalised on the GPU).
- ``decode``: the ceiling: ffcv's libjpeg-turbo ``imdecode`` of every stored JPEG of the beton into a
  preallocated buffer, ``prange`` over a batch, nothing else.
- ``decode_dct``: the same ceiling with libjpeg-turbo's 1/2 DCT scaling where ours may use it (every crop
  of the sample at least twice its output size, same draws as ours), full size elsewhere.
- ``decode_half``: every JPEG at 1/2 DCT scale: what the scaling would buy if it always applied.

A contender lives in a child process (forked before the parent starts any thread pool), so compiled
code, thread pools, allocator state and memory of one never disturb another, and the parent can
interleave their epochs (round robin) so that load from other programs hits all of them alike.
"""
from __future__ import annotations

import os
import resource
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Type

import numpy as np

from ..registry import Registry

CONTENDERS: Registry[Type["Contender"]] = Registry("contender")
LABELS: Dict[str, str] = {}          # short name for tables
DESCRIPTIONS: Dict[str, str] = {}    # one line for the legend and the JSON


def register_contender(key: str, label: str, description: str) -> Callable[[Type["Contender"]], Type["Contender"]]:
    def wrap(cls: Type["Contender"]) -> Type["Contender"]:
        CONTENDERS.register(key, cls)
        LABELS[key] = label
        DESCRIPTIONS[key] = description
        return cls
    return wrap


@dataclass(frozen=True)
class Task:
    """Everything a contender needs, picklable.

    Attributes:
        indices: positions of the samples of one epoch (the same nested subset for every contender).
        files, labels: the JPEG file and label of every position (for the torchvision contenders).
    """

    kind: str
    beton: str
    files: Tuple[str, ...]
    labels: Tuple[int, ...]
    indices: Tuple[int, ...]
    workers: int
    batch_size: int
    size: int = 224
    views: int = 2
    seed: int = 0
    measure_memory: bool = False
    recipe: Tuple[Tuple[str, object], ...] = ()    # ViewConfig overrides for ours (the --breakdown variants)


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fp:
            fields = fp.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status() -> Dict[str, int]:
    """RSS parts of this process in bytes (VmRSS = RssAnon + RssFile + RssShmem)."""
    out = {}
    with open("/proc/self/status") as fp:
        for line in fp:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    return out


class PeakSampler:
    """Samples this process's RSS every ``interval`` s in a thread; ``reset()`` starts a new peak."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.peak: Dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def sample(self) -> Dict[str, int]:
        now = _status()
        for k, v in now.items():
            self.peak[k] = max(self.peak.get(k, 0), v)
        return now

    def reset(self) -> None:
        self.peak = dict(_status())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


class Contender:
    """One way of loading: ``setup``, then ``run_epoch`` (returns the samples delivered), then ``close``."""

    def __init__(self, task: Task):
        self.task = task

    def setup(self) -> None:
        raise NotImplementedError

    def run_epoch(self, epoch: int) -> int:
        raise NotImplementedError

    def after_warmup(self) -> None:
        """Called once the warm-up (compile) epoch is over."""

    def cpu_seconds(self) -> float:
        """CPU seconds spent so far by every process doing this contender's work."""
        return _cpu_self()

    def close(self) -> Dict:
        """Release resources; returns extra facts for the report."""
        return {}


class _Ours(Contender):
    colour_on = "host"

    def setup(self) -> None:
        from ..loading import ViewConfig, ViewLoader

        t = self.task
        self.sampler = PeakSampler() if t.measure_memory else None
        self.before = _status()
        views = [ViewConfig(count=t.views, size=t.size, **dict(t.recipe))]
        self.vl = ViewLoader(t.beton, views, batch_size=t.batch_size, num_workers=t.workers, order="random",
                             seed=t.seed, indices=list(t.indices), colour_on=self.colour_on)

    def after_warmup(self) -> None:
        self.idle = _status()
        if self.sampler is not None:
            self.sampler.reset()

    def close(self) -> Dict:
        facts = {"memory_formula": self.vl.memory_formula(), "num_views": self.vl.num_views}
        if self.sampler is not None:
            self.sampler.stop()
            facts["rss"] = {"after_imports": self.before, "idle_after_warmup": self.idle,
                            "peak_during_epochs": self.sampler.peak}
            facts["pinned"] = _pinned_bytes()
        del self.vl
        return facts


def _pinned_bytes() -> Optional[int]:
    """Current page-locked host memory of this process from torch's CUDA host allocator; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    stats = getattr(torch.cuda, "host_memory_stats", None)
    return int(stats().get("allocated_bytes.current", 0)) if stats else None


@register_contender("ours", "(a) ours",
                    "ViewLoader, SimCLR ViewConfig(count=2); uint8 views out (finishing runs on the GPU)")
class Ours(_Ours):
    """uint8 views as ffcv delivers them (pinned on CUDA): the CPU work of training with GPU finishing."""

    def run_epoch(self, epoch: int) -> int:
        self.vl.decoder.set_epoch(epoch)
        n = 0
        for images, *_ in self.vl.loader:
            n += images.shape[0]
        return n


@register_contender("ours_split", "(a2) ours, GPU split",
                    "ViewLoader colour_on=device: host decodes + crops + resizes + flips; colour runs on the GPU")
class OursSplit(Ours):
    """The host's share in GPU-split mode: uint8 crops and their colour parameters, as ffcv delivers them."""

    colour_on = "device"


@register_contender("ours_finish", "(a') ours+CPU finish",
                    "the same through ViewLoader's public iteration, float32 normalised views finished on the CPU")
class OursFinish(_Ours):
    """``for batch in ViewLoader``: float32 normalised channels_last views, finished on the CPU."""

    def run_epoch(self, epoch: int) -> int:
        self.vl.set_epoch(epoch)
        return sum(len(batch) for batch in self.vl)


@register_contender("ffcv", "(b) stock ffcv",
                    "one RandomResizedCropRGBImageDecoder pipeline per view + ffcv flip/brightness/contrast/saturation")
class StockFfcv(Contender):
    def setup(self) -> None:
        from ffcv.fields.basics import IntDecoder
        from ffcv.fields.rgb_image import RandomResizedCropRGBImageDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.pipeline import PipelineSpec
        from ffcv.transforms import (RandomBrightness, RandomContrast, RandomHorizontalFlip, RandomSaturation,
                                     Squeeze, ToTensor)

        from dataset_writers.beton_check import open_beton

        from ..runtime import configure_numba

        configure_numba()
        t = self.task
        pipelines: Dict = {name: None for name in open_beton(t.beton).field_names}
        pipelines["label"] = [IntDecoder(), ToTensor(), Squeeze()]
        for v in range(t.views):   # fresh Operation instances per view (a shared one is ambiguous in ffcv)
            ops = [RandomHorizontalFlip(), RandomBrightness(0.8, p=0.8), RandomContrast(0.8, p=0.8),
                   RandomSaturation(0.8, p=0.8), ToTensor()]
            pipelines[f"view{v}"] = PipelineSpec("image", decoder=RandomResizedCropRGBImageDecoder((t.size, t.size)),
                                                 transforms=ops)
        self.loader = Loader(t.beton, batch_size=t.batch_size, num_workers=t.workers, order=OrderOption.RANDOM,
                             seed=t.seed, indices=list(t.indices), pipelines=pipelines, drop_last=True,
                             batches_ahead=3)

    def run_epoch(self, epoch: int) -> int:
        n = 0
        for batch in self.loader:
            n += batch[0].shape[0]
        return n


class _TorchvisionFiles(Contender):
    """A ``DataLoader`` over the JPEG files, ``workers`` processes, two views of each decoded image."""

    def transform(self) -> Callable:
        raise NotImplementedError

    def setup(self) -> None:
        import torch
        from torch.utils.data import DataLoader

        t = self.task
        dataset = TwoViewFiles([t.files[i] for i in t.indices], [t.labels[i] for i in t.indices],
                               self.transform(), t.views)
        self.loader = DataLoader(dataset, batch_size=t.batch_size, shuffle=True, num_workers=t.workers,
                                 persistent_workers=t.workers > 0, drop_last=True,
                                 generator=torch.Generator().manual_seed(t.seed))

    def run_epoch(self, epoch: int) -> int:
        n = 0
        for batch in self.loader:
            n += batch[0].shape[0]
        return n

    def cpu_seconds(self) -> float:
        it = getattr(self.loader, "_iterator", None)
        workers = getattr(it, "_workers", []) if it is not None else []
        return _cpu_self() + sum(_cpu_of(w.pid) for w in workers if w.pid)

    def close(self) -> Dict:
        it = getattr(self.loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        return {}


class TwoViewFiles:
    """ImageFolder-like: read a JPEG file with torchvision's ``pil_loader``, apply ``transform`` per view."""

    def __init__(self, paths: List[str], labels: List[int], transform: Callable, views: int):
        self.paths, self.labels, self.transform, self.views = paths, labels, transform, views

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from torchvision.datasets.folder import pil_loader

        img = pil_loader(self.paths[i])
        return (*[self.transform(img) for _ in range(self.views)], self.labels[i])


def simclr_v2(size: int = 224):
    """The SimCLR recipe, literally, in torchvision transforms v2 (Chen et al. 2020, App. A)."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomResizedCrop(size, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(kernel_size=_odd(0.1 * size), sigma=(0.1, 2.0))], p=0.5),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])


def _odd(x: float) -> int:
    k = max(3, int(round(x)))
    return k if k % 2 else k + 1


class PilSimCLR:
    """The SimCLR recipe on PIL images with the cheapest faithful kernels; returns a uint8 CHW tensor.

    Same distributions as torchvision (its own crop sampler and PIL colour jitter); the differences are
    implementation shortcuts: the crop and the resize are one ``Image.resize(box=...)`` (no crop copy),
    grayscale is ``convert('L').convert('RGB')``, and the blur is PIL's ``ImageFilter.GaussianBlur`` with
    radius = sigma (an extended-box approximation of the Gaussian, not truncated at 23 taps).
    """

    def __init__(self, size: int = 224, flip_p: float = 0.5, jitter_p: float = 0.8, gray_p: float = 0.2,
                 blur_p: float = 0.5, sigma: Tuple[float, float] = (0.1, 2.0)):
        from torchvision.transforms import v2

        self.size = size
        self.p = (flip_p, jitter_p, gray_p, blur_p)
        self.sigma = sigma
        self.jitter = v2.ColorJitter(0.8, 0.8, 0.8, 0.2)   # PIL kernels when given a PIL image

    def __call__(self, img):
        import torch
        from PIL import Image, ImageFilter
        from torchvision.transforms import RandomResizedCrop
        from torchvision.transforms.v2.functional import pil_to_tensor

        i, j, h, w = RandomResizedCrop.get_params(img, scale=[0.08, 1.0], ratio=[3 / 4, 4 / 3])
        img = img.resize((self.size, self.size), Image.BILINEAR, box=(j, i, j + w, i + h))
        u = torch.rand(5).tolist()
        flip_p, jitter_p, gray_p, blur_p = self.p
        if u[0] < flip_p:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if u[1] < jitter_p:
            img = self.jitter(img)
        if u[2] < gray_p:
            img = img.convert("L").convert("RGB")
        if u[3] < blur_p:
            img = img.filter(ImageFilter.GaussianBlur(radius=self.sigma[0] + (self.sigma[1] - self.sigma[0]) * u[4]))
        return pil_to_tensor(img)


@register_contender("tv_v2", "(c1) torchvision v2",
                    "DataLoader over the JPEG files, literal transforms v2 SimCLR recipe applied twice")
class TorchvisionV2(_TorchvisionFiles):
    def transform(self) -> Callable:
        return simclr_v2(self.task.size)


@register_contender("tv_pil", "(c2) torchvision PIL",
                    "DataLoader over the JPEG files, PIL decode + PIL ops (ImageFilter.GaussianBlur), uint8 tensor")
class TorchvisionPil(_TorchvisionFiles):
    def transform(self) -> Callable:
        return PilSimCLR(self.task.size)


def _decode_kernel():
    """``decode_batch(data, offsets, sizes, heights, widths, idx, bufs)``: decode ``idx`` in parallel."""
    from ffcv.libffcv import imdecode
    from numba import njit, prange

    imdecode_c = njit(imdecode)

    @njit(parallel=True, nogil=True)
    def decode_batch(data, offsets, sizes, heights, widths, idx, bufs):
        for k in prange(len(idx)):
            i = idx[k]
            imdecode_c(data[offsets[i]:offsets[i] + sizes[i]], bufs[k], heights[i], widths[i], heights[i],
                       widths[i], 0, 0, 1, 1, False, False)

    return decode_batch


@register_contender("decode", "(d) decode only",
                    "ceiling: ffcv's libjpeg-turbo imdecode of every JPEG in a numba prange over the batch")
class DecodeOnly(Contender):
    """Full-size decode of the beton's JPEGs with ffcv's ``imdecode`` (TurboJPEG, FASTDCT), ``prange``
    over each batch on ``workers`` numba threads, into per-slot buffers sized by the largest image."""

    def setup(self) -> None:
        import numba

        from ..runtime import configure_numba
        from ._photos import stored_jpegs

        configure_numba()
        numba.set_num_threads(self.task.workers)
        entries = np.array(stored_jpegs(self.task.beton), dtype=np.int64)
        self.offsets, self.sizes, self.heights, self.widths = (np.ascontiguousarray(c) for c in entries.T)
        self.data = np.memmap(self.task.beton, dtype=np.uint8, mode="r")
        area = int((self.heights * self.widths).max())
        self.bufs = np.empty((self.task.batch_size, area * 3), np.uint8)
        self.kernel = _decode_kernel()
        self.indices = np.array(self.task.indices, np.int64)

    def run_epoch(self, epoch: int) -> int:
        order = np.random.default_rng([self.task.seed, epoch]).permutation(self.indices)
        b = self.task.batch_size
        n = (len(order) // b) * b
        for s in range(0, n, b):
            self.kernel(self.data, self.offsets, self.sizes, self.heights, self.widths, order[s:s + b], self.bufs)
        return n

    def close(self) -> Dict:
        mpix = float((self.heights[self.indices] * self.widths[self.indices]).mean()) / 1e6
        return {"mean_megapixels": round(mpix, 4)}


def _scaled_decode_kernel():
    """``decode_batch(data, offsets, sizes, heights, widths, idx, denoms, bufs)``: decode ``idx[k]`` at 1/denoms[k]."""
    from ffcv.libffcv import imdecode
    from numba import njit, prange

    imdecode_c = njit(imdecode)

    @njit(parallel=True, nogil=True)
    def decode_batch(data, offsets, sizes, heights, widths, idx, denoms, bufs):
        for k in prange(len(idx)):
            i = idx[k]
            imdecode_c(data[offsets[i]:offsets[i] + sizes[i]], bufs[k], heights[i], widths[i], heights[i],
                       widths[i], 0, 0, 1, denoms[k], False, False)

    return decode_batch


class _ScaledDecode(DecodeOnly):
    """The ceiling with libjpeg-turbo's DCT scaling: each JPEG decoded at 1/``denominator(sample)``."""

    def setup(self) -> None:
        super().setup()
        self.kernel = _scaled_decode_kernel()
        self.halves = []

    def denominators(self, positions: np.ndarray, epoch: int) -> np.ndarray:
        raise NotImplementedError

    def run_epoch(self, epoch: int) -> int:
        order = np.random.default_rng([self.task.seed, epoch]).permutation(self.indices)
        denoms = self.denominators(order, epoch)
        self.halves.append(float((denoms == 2).mean()))
        b = self.task.batch_size
        n = (len(order) // b) * b
        for s in range(0, n, b):
            self.kernel(self.data, self.offsets, self.sizes, self.heights, self.widths, order[s:s + b],
                        denoms[s:s + b], self.bufs)
        return n

    def close(self) -> Dict:
        return {**super().close(), "half_scale_fraction": round(float(np.mean(self.halves)), 4)}


@register_contender("decode_dct", "(d2) decode, 1/2 DCT where ours may",
                    "ceiling with libjpeg-turbo 1/2 DCT scaling for the samples whose every crop allows it "
                    "(ours' rule, same draws), full size elsewhere")
class DecodeWhereScalingApplies(_ScaledDecode):
    def denominators(self, positions: np.ndarray, epoch: int) -> np.ndarray:
        from ..loading import ViewConfig
        from ..ops.decoder import recipes_to_arrays
        from ..ops.views import PARAM_FLOATS, PARAM_INTS, draw_params, half_scale_allowed

        t = self.task
        vf, vi = recipes_to_arrays([ViewConfig(size=t.size)] * t.views)
        n = len(positions)
        pint = np.empty((n, t.views, PARAM_INTS), np.int64)
        pflt = np.empty((n, t.views, PARAM_FLOATS), np.float64)
        h, w = self.heights[positions], self.widths[positions]
        draw_params(positions.astype(np.int64), h, w, np.uint64(t.seed), epoch, vf, vi, pint, pflt)
        return np.array([2 if half_scale_allowed(pint[k], vi, h[k], w[k]) else 1 for k in range(n)], np.int64)


@register_contender("decode_half", "(d3) decode, all at 1/2 DCT",
                    "every JPEG at libjpeg-turbo's 1/2 DCT scale: what the scaling would buy if it always applied")
class DecodeAllHalf(_ScaledDecode):
    def denominators(self, positions: np.ndarray, epoch: int) -> np.ndarray:
        return np.full(len(positions), 2, np.int64)


@dataclass
class Outcome:
    """What the parent learns about one contender."""

    ready: Dict = field(default_factory=dict)
    epochs: List[Dict] = field(default_factory=list)    # {samples, seconds, cpu_seconds, load1} per epoch
    facts: Dict = field(default_factory=dict)
    error: Optional[str] = None


def serve(task: Task, conn) -> None:
    """Child process body: set up, warm up (compile) one epoch, then obey ``epoch``/``close`` commands."""
    contender: Optional[Contender] = None
    try:
        contender = CONTENDERS[task.kind](task)
        t0 = time.perf_counter()
        contender.setup()
        t1 = time.perf_counter()
        contender.run_epoch(0)
        contender.after_warmup()
        conn.send(("ready", {"setup_s": round(t1 - t0, 2), "warmup_s": round(time.perf_counter() - t1, 2)}))
        while True:
            cmd, arg = conn.recv()
            if cmd == "epoch":
                c0, w0 = contender.cpu_seconds(), time.perf_counter()
                n = contender.run_epoch(int(arg))
                seconds, cpu = time.perf_counter() - w0, contender.cpu_seconds() - c0
                conn.send(("epoch", {"samples": n, "seconds": seconds, "cpu_seconds": cpu}))
            else:
                facts, contender = contender.close(), None
                conn.send(("closed", facts))
                return
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which prints one line
        tail = traceback.format_exc(limit=-3).strip().splitlines()
        conn.send(("error", f"{type(exc).__name__}: {exc} [{' | '.join(tail[-3:])}]"))
        if contender is not None:
            try:
                contender.close()
            except Exception:  # noqa: BLE001
                pass
