"""``ViewLoader``: ffcv's ``Loader`` with our multi-view decoder, exact epochs, resumable, clean shutdown.

It yields ``Batch``es of finished tensors: every view as (B, 3, h, w) in the requested dtype, normalised,
channels_last, on the requested device; labels and every extra label level as int64 (B,). The uint8
views travel to the GPU from pinned memory on ffcv's own CUDA streams (``ToDevice(non_blocking)``);
conversion and normalisation happen there in torch (``finish.py``). On CPU the same code runs on CPU.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from ..errors import UserError
from ..ffcv_compat import safe_epoch_iterator, safe_os_cache
from ..ops.recipe import expand_views
from ..runtime import configure_numba
from ..util import cpu_budget
from .config import DataConfig, ViewConfig
from .finish import ViewFinisher

_NON_LABEL_FIELDS = ("image", "source", "index")
_COLOUR_OUTPUT = "__colour_params"        # GPU-split mode: the second pipeline of the image field


def resolve_colour_on(colour_on: str, device: torch.device) -> str:
    """``auto`` -> ``device`` (GPU split) when the consumer is CUDA, else ``host`` (CPU-complete)."""
    if colour_on not in ("auto", "host", "device"):
        raise UserError(f"colour_on={colour_on!r} must be auto, host or device")
    if colour_on == "auto":
        return "device" if device.type == "cuda" else "host"
    return colour_on


@dataclass
class Batch:
    views: List[torch.Tensor]
    label: torch.Tensor
    levels: Dict[str, torch.Tensor] = field(default_factory=dict)
    index: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.label)


def _check_beton(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UserError(f"beton {p} does not exist; write it with 'ffcv-ssl write' or fix the path")
    if p.is_dir():
        raise UserError(f"beton {p} is a directory; give the .beton file")
    return p


def _check_threading_layer() -> None:
    import numba

    layer = numba.threading_layer()
    if layer not in ("tbb", "omp"):
        raise UserError(f"numba threading layer is {layer!r}: two loaders at once would abort the process; "
                        "install tbb (pip install tbb) or unset NUMBA_THREADING_LAYER")


class ViewLoader:
    """Multi-view batches from one beton.

    Args:
        path: the ``.beton``.
        views: the view recipes (``ViewConfig`` groups, expanded by ``count``).
        batch_size: per process.
        num_workers: loader threads; 0 means the CPUs of this process's affinity mask.
        order: ``random``, ``quasi_random`` (refused under DDP: ffcv cannot shard it) or ``sequential``.
        seed: shuffling and augmentation seed; with the epoch and the sample id it fixes every draw.
        distributed: shard samples over the processes of the initialised process group (ffcv's
            ``distributed=True``, same semantics as ``DistributedSampler`` with this seed).
        device: where finished tensors live; ``dtype``: their dtype (bf16/fp16 on GPU, fp32 on CPU).
        colour_on: ``host`` (CPU-complete: every op in the host kernel), ``device`` (GPU split: the host
            stops after crop + resize + flip, colour/grayscale/blur/solarize run as batched torch ops on
            ``device``), ``auto`` (device on CUDA). Both modes use the same draws (within 1 grey level).
        colour_compile: GPU split only: run the device-side colour through ``torch.compile``.
        indices: restrict to these sample positions (label budgets).
    """

    def __init__(self, path: str, views: Sequence[ViewConfig], *, batch_size: int, num_workers: int = 0,
                 order: str = "random", seed: int = 0, distributed: bool = False, os_cache: bool = True,
                 drop_last: bool = True, batches_ahead: int = 3, half_scale_decode: bool = True,
                 roi_decode_fraction: float = 0.0, colour_on: str = "auto", colour_compile: bool = False,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 channels_last: bool = True, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                 indices: Optional[Sequence[int]] = None, with_index: bool = False):
        from ffcv.fields.basics import IntDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.pipeline import PipelineSpec
        from ffcv.transforms import Squeeze, ToDevice, ToTensor

        from ..ops.decoder import MultiViewDecoder
        from ..ops.views import I_BLUR_RADIUS

        for v in views:
            v.validate()                  # ConfigError (one line) before any work
        configure_numba()
        _check_beton(path)
        if order not in ("random", "quasi_random", "sequential"):
            raise UserError(f"order {order!r} must be random, quasi_random or sequential")
        if distributed and order == "quasi_random":
            raise UserError("order quasi_random cannot be sharded across processes (ffcv issue #92); "
                            "use data.order=random under DDP")
        if indices is not None and len(indices) == 0:
            raise UserError(f"{path}: the selected subset is empty")
        self.path = str(path)
        self.device = torch.device(device)
        self.num_workers = int(num_workers) or cpu_budget()
        self.seed = int(seed)
        per_view = expand_views(views)
        self.colour_on = resolve_colour_on(colour_on, self.device)
        if not any(v.jitter_p > 0 or v.gray_p > 0 or v.blur_p > 0 or v.solarize_p > 0 for v in per_view):
            self.colour_on = "host"       # nothing to split (evaluation, supervised views): no parameter pipeline
        self.decoder = MultiViewDecoder(per_view, seed=self.seed, half_scale=half_scale_decode,
                                        roi_fraction=roi_decode_fraction, host_colour=self.colour_on == "host")
        on_cuda = self.device.type == "cuda"
        to_device = [ToDevice(self.device, non_blocking=True)] if on_cuda else []
        image_ops = [ToTensor(), *to_device]
        pipelines = {"image": PipelineSpec("image", decoder=self.decoder, transforms=image_ops)}
        if self.colour_on == "device":
            from ..ops.decoder import ColourParams

            # kept on the host: the finisher decides per op on the host and moves only the values
            pipelines[_COLOUR_OUTPUT] = PipelineSpec("image", decoder=ColourParams(self.decoder),
                                                     transforms=[ToTensor()])
        from dataset_writers.beton_check import open_beton
        from dataset_writers.manifest import manifest_path, read_manifest

        # header, tables and pointers checked (metadata only) before compiled code touches the pages: a
        # damaged beton is one line (BetonError), not a segfault or a terabyte allocation
        manifest = read_manifest(self.path) if manifest_path(self.path).is_file() else None
        handlers = open_beton(self.path, manifest).handlers
        names = list(handlers)
        if "image" not in names or "label" not in names:
            raise UserError(f"{path}: needs 'image' and 'label' fields (has {', '.join(names)})")
        from ffcv.fields import IntField

        # every other integer field is a label level (e.g. iNat21's genus ... kingdom)
        self.level_names = [n for n in names if n not in _NON_LABEL_FIELDS and n != "label"
                            and isinstance(handlers[n], IntField)]
        int_fields = ["label", *self.level_names] + (["index"] if with_index else [])
        for name in names:
            if name in int_fields:
                pipelines[name] = [IntDecoder(), ToTensor(), Squeeze(), *to_device]
            elif name != "image":
                pipelines[name] = None
        orders = {"random": OrderOption.RANDOM, "quasi_random": OrderOption.QUASI_RANDOM,
                  "sequential": OrderOption.SEQUENTIAL}
        with safe_os_cache():
            self.loader = Loader(self.path, batch_size=batch_size, num_workers=self.num_workers, os_cache=os_cache,
                                 order=orders[order], distributed=distributed, seed=self.seed, indices=indices,
                                 pipelines=pipelines, drop_last=drop_last, batches_ahead=batches_ahead)
        if len(self.loader) == 0:
            raise UserError(f"{path}: fewer samples ({len(self.loader.indices)}) than one batch of "
                            f"{batch_size}; lower the batch size or pass drop_last=False")
        self.finisher = ViewFinisher([v.shape for v in per_view], mean, std, dtype, channels_last,
                                     blur_radii=[int(r) for r in self.decoder.vi[:, I_BLUR_RADIUS]],
                                     compile_colour=colour_compile)
        self.epoch = 0
        self._checked_layer = False
        self._live: Optional[threading.Thread] = None

    @property
    def num_views(self) -> int:
        return len(self.decoder.views)

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """The next iteration yields epoch ``epoch`` (its order and its augmentations)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[Batch]:
        return self.iterate()

    def iterate(self, start_batch: int = 0) -> Iterator[Batch]:
        """Batches of the current epoch from ``start_batch`` on (for resuming mid-epoch), then epoch += 1.

        The worker thread is always closed and joined, even when the consumer stops early.
        """
        from ffcv.pipeline.compiler import Compiler

        loader = self.loader
        epoch = self.epoch
        self.decoder.set_epoch(epoch)
        Compiler.set_num_threads(loader.num_workers)
        order = loader.traversal_order.sample_order(epoch)
        order = order[: len(loader) * loader.batch_size][start_batch * loader.batch_size:]
        if loader.code is None:
            loader.generate_code()
        if len(order) == 0:
            self.epoch = epoch + 1
            return
        it = safe_epoch_iterator()(loader, order)
        self._live = it
        names = list(loader.pipeline_specs)
        try:
            for raw in it:
                if not self._checked_layer:
                    _check_threading_layer()
                    self._checked_layer = True
                out = dict(zip(names, raw))
                views = self.finisher(out["image"], out.get(_COLOUR_OUTPUT))
                # copies: ffcv reuses its (batches_ahead + 2) output slots, so a tensor handed out as is
                # would be overwritten by a later batch while the caller still holds it
                levels = {n: out[n].to(torch.int64, copy=True) for n in self.level_names if n in out}
                index = out["index"].to(torch.int64, copy=True) if "index" in out else None
                yield Batch(views, out["label"].to(torch.int64, copy=True), levels, index)
            self.epoch = epoch + 1
        finally:
            it.close()
            it.join(timeout=30)
            self._live = None

    def memory_formula(self) -> Dict[str, int]:
        """Bytes the loader holds, by the formula in docs/loading.md.

        Output slots: (batches_ahead + 2) x batch x views x H x W x 3 (pinned on CUDA); decode buffers:
        one per loader thread, sized by the largest stored image *area*, plus a few rows of float scratch.
        """
        b = self.loader.batch_size
        slots = self.loader.batches_ahead + 2
        v, h, w = self.num_views, self.decoder.out_h, self.decoder.out_w
        views = slots * b * v * h * w * 3
        side = max(h, w)
        scratch = self.num_workers * (self.decoder.max_area * 3 + 4 * 30 * 3 * side)
        labels = slots * b * 8 * (1 + len(self.level_names))
        # GPU-split mode: the colour parameters, (batches_ahead + 2) x B x V x COLOUR_COLS float64
        from ..ops.views import COLOUR_COLS

        colour = slots * b * v * COLOUR_COLS * 8 if self.colour_on == "device" else 0
        return {"view_buffers": views, "decode_scratch": scratch, "labels": labels + colour,
                "total": views + scratch + labels + colour}


def make_loader(cfg: DataConfig, split: str = "train", *, views: Optional[Sequence[ViewConfig]] = None,
                seed: int = 0, distributed: bool = False, device="cpu", dtype=torch.float32,
                channels_last: bool = True, indices=None, batch_size: Optional[int] = None,
                order: Optional[str] = None, drop_last: Optional[bool] = None, with_index: bool = False) -> ViewLoader:
    """A ``ViewLoader`` for ``cfg.train`` (training views) or ``cfg.val`` (the evaluation view)."""
    from .config import eval_view

    path = cfg.train if split == "train" else cfg.val
    if path is None:
        raise UserError(f"data.{split} is not set; give the path of a .beton")
    if views is None:
        views = cfg.views if split == "train" else [eval_view(cfg.eval_size, cfg.eval_center_ratio)]
    return ViewLoader(path, views, batch_size=batch_size or cfg.batch_size, num_workers=cfg.num_workers,
                      order=order or (cfg.order if split == "train" else "sequential"), seed=seed,
                      distributed=distributed, os_cache=cfg.os_cache,
                      drop_last=(cfg.drop_last if split == "train" else False) if drop_last is None else drop_last,
                      batches_ahead=cfg.batches_ahead, half_scale_decode=cfg.half_scale_decode,
                      roi_decode_fraction=cfg.roi_decode_fraction, colour_on=cfg.colour_on,
                      colour_compile=cfg.colour_compile, device=device,
                      dtype=dtype, channels_last=channels_last, mean=cfg.mean, std=cfg.std, indices=indices,
                      with_index=with_index)
