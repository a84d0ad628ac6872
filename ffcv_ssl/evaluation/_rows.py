"""Chunked reading of (memory-mapped) fp16 feature rows as float32 tensors, shared by the probes.

The one rule: features are never converted as a whole. On the CPU every pass gathers a chunk of rows
from the memmap and converts only that chunk; on a GPU the selected rows are uploaded once, still fp16,
so GPU memory (not RAM) holds them and each chunk is converted there.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Tuple

import numpy as np
import torch

from ffcv_ssl.errors import UserError

DEFAULT_CHUNK_ROWS = 8192   # 8192 x 2048 float32 = 64 MB per converted chunk


def resolve_device(name: str) -> torch.device:
    """``auto`` (a GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``; an absent GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked but torch sees no CUDA GPU; use device=cpu or device=auto")
    return device


def gather(x: Any, positions: np.ndarray) -> np.ndarray:
    """Rows ``positions`` (sorted) of a memmap, an array, or a lazily concatenated view, as an ndarray."""
    positions = np.asarray(positions)
    if len(positions) and positions[-1] - positions[0] + 1 == len(positions):   # contiguous: a slice, no copy
        return np.asarray(x[int(positions[0]): int(positions[-1]) + 1])
    return np.asarray(x[positions])


class Rows:
    """Selected rows of a feature matrix, served chunk by chunk as float32 tensors on ``device``.

    Args:
        x: ``(N, D)`` fp16 (or any float) memmap, array, or ``ConcatFeatures``.
        positions: sorted row indices to serve (``None`` = all rows).
        device: where chunks are produced; on CUDA the rows are uploaded once and kept (fp16).
        chunk_rows: rows converted to float32 at a time.
        resident: keep the rows (fp16) in ``device`` memory; default: on CUDA only (on the CPU it would be a
            second copy beside the page cache, so only tests ask for it there).
    """

    def __init__(self, x: Any, positions: Optional[np.ndarray], device: torch.device,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, resident: Optional[bool] = None):
        n_all = int(x.shape[0])
        self.x = x
        self.positions = np.arange(n_all, dtype=np.int64) if positions is None else np.asarray(positions, np.int64)
        self.device = device
        self.chunk_rows = max(1, int(chunk_rows))
        self.width = int(x.shape[1])
        self.resident: Optional[torch.Tensor] = None
        if device.type == "cuda" if resident is None else resident:
            self.resident = torch.empty((len(self.positions), self.width), dtype=torch.float16, device=device)
            for start, stop in self._bounds():
                host = torch.from_numpy(np.array(gather(x, self.positions[start:stop]), dtype=np.float16))
                self.resident[start:stop].copy_(host, non_blocking=False)

    def __len__(self) -> int:
        return len(self.positions)

    def _bounds(self) -> Iterator[Tuple[int, int]]:
        for start in range(0, len(self.positions), self.chunk_rows):
            yield start, min(start + self.chunk_rows, len(self.positions))

    def chunks(self) -> Iterator[Tuple[int, int, torch.Tensor]]:
        """``(start, stop, float32 tensor of rows positions[start:stop])``; the tensor is fresh, so callers may
        modify it in place."""
        for start, stop in self._bounds():
            if self.resident is not None:
                yield start, stop, self.resident[start:stop].float()
            else:
                rows = gather(self.x, self.positions[start:stop])
                yield start, stop, torch.from_numpy(rows.astype(np.float32))

    def moments(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-feature mean and standard deviation in one streaming pass.

        Sums are taken around a shift (the first chunk's mean) and accumulated in float64, so the variance
        does not cancel when a feature's mean is large against its spread.
        """
        total = torch.zeros(self.width, dtype=torch.float64, device=self.device)
        squares = torch.zeros(self.width, dtype=torch.float64, device=self.device)
        shift: Optional[torch.Tensor] = None
        for _, _, chunk in self.chunks():
            if shift is None:
                shift = chunk.mean(0)
            chunk -= shift
            total += chunk.sum(0).double()
            squares += (chunk * chunk).sum(0).double()
        n = max(len(self), 1)
        centred = total / n
        var = (squares / n - centred * centred).clamp_min(0.0)
        mean = centred + (shift.double() if shift is not None else 0.0)
        return mean, var.sqrt()
