"""Finishing on the device: uint8 (B, V, H, W, 3) -> per-view normalised (B, 3, h, w), channels_last.

This is the only float work of the loader and it runs in torch where the model runs (GPU in training),
so CPU loader threads only ever move uint8. No cupy: plain torch ops, the same code on CPU.
In GPU-split mode it first applies each view's colour parameters (``ops/device_colour.py``), so the
engine gets the same finished views in both modes and never needs to know which one ran.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch


class ViewFinisher:
    """Slice, convert, normalise and lay out every view of a uint8 batch.

    Args:
        sizes: (h, w) of every view; view ``v`` occupies ``[:h_v, :w_v]`` of the shared buffer.
        mean, std: per-channel, in [0, 1] units (ImageNet's by default).
        dtype: output dtype (float32 on CPU; bfloat16 or float16 on GPU).
        blur_radii: every view's blur radius (GPU-split mode: ``colour`` params are given per batch).
        compile_colour: run GPU-split mode's colour through ``torch.compile`` (``apply_colour_masked``: the
            element-wise chains fused into a few kernels; the first batch of each view shape compiles).
    """

    def __init__(self, sizes: Sequence[Tuple[int, int]], mean, std, dtype: torch.dtype = torch.float32,
                 channels_last: bool = True, blur_radii: Optional[Sequence[int]] = None,
                 compile_colour: bool = False):
        self.compile_colour = bool(compile_colour)
        self.sizes = [tuple(int(x) for x in s) for s in sizes]
        self.blur_radii = [int(r) for r in blur_radii] if blur_radii is not None else [0] * len(self.sizes)
        self.dtype = dtype
        self.channels_last = channels_last
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self._inv_std = 1.0 / (torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self._cache: dict = {}

    def _stats(self, device: torch.device):
        if device not in self._cache:
            self._cache[device] = (self._mean.to(device), self._inv_std.to(device))
        return self._cache[device]

    def __call__(self, batch: torch.Tensor, colour: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        """``batch``: uint8 (B, V, H, W, 3) on any device; returns V tensors (B, 3, h, w).

        ``colour``: GPU-split mode's (B, V, COLOUR_COLS) float64 parameters (``ColourParams``), applied to
        the crops before the conversion; None when the host already applied them.
        """
        if batch.dtype != torch.uint8 or batch.dim() != 5:
            raise TypeError(f"expected a uint8 (B, V, H, W, 3) batch, got {batch.dtype} {tuple(batch.shape)}")
        mean, inv_std = self._stats(batch.device)
        views = []
        for v, (h, w) in enumerate(self.sizes):
            x = batch[:, v, :h, :w]
            if colour is not None:
                from ..ops import device_colour

                fn = device_colour.compiled_colour() if self.compile_colour else device_colour.apply_colour
                x = fn(x, colour[:, v], self.blur_radii[v])            # float32, integer grey levels
            x = x.permute(0, 3, 1, 2)                              # a channels_last view of the data
            x = x.to(torch.float32).sub_(mean).mul_(inv_std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            else:
                x = x.contiguous()
            views.append(x.to(self.dtype))
        return views
