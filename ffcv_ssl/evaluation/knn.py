"""Weighted k-nearest-neighbour classifier on cached features: a cheap monitor of representation quality.

The protocol of Wu et al. (InstDisc, 2018) as used by DINO (Caron et al., 2021): cosine similarity on
L2-normalised features, the k = 20 nearest training samples vote for their class with weight
``exp(similarity / T)``, T = 0.07. Training features are streamed in chunks and only a running top-k
per query is kept, so memory is one chunk of similarities, whatever the training set size.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ._rows import DEFAULT_CHUNK_ROWS, Rows, resolve_device
from .linear import ProbeError, topk_accuracy

PROTOCOL = "cached frozen features; cosine kNN, temperature-weighted votes exp(sim/T) (InstDisc/DINO)"


@dataclass
class KnnConfig:
    """Attributes:
        k: neighbours that vote.
        temperature: vote weight ``exp(sim / temperature)``.
        query_chunk: evaluation rows scored at a time (memory: ``query_chunk x chunk_rows`` similarities).
        chunk_rows: training rows per chunk.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        topk: second metric (top-5), capped at the number of classes.
    """

    k: int = 20
    temperature: float = 0.07
    query_chunk: int = 1024
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    device: str = "auto"
    topk: int = 5

    def validate(self) -> "KnnConfig":
        if self.k < 1 or self.query_chunk < 1 or self.chunk_rows < 1 or self.topk < 1:
            raise ProbeError("kNN: k, query_chunk, chunk_rows and topk must be >= 1")
        if not self.temperature > 0:
            raise ProbeError(f"kNN temperature={self.temperature} must be > 0 (0.07 in InstDisc/DINO)")
        return self


def nearest(train: Rows, queries: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities ``(q, k)`` (descending) and row numbers into ``train`` of the ``k`` nearest rows.

    ``queries`` must be L2-normalised float32 on ``train.device``; training chunks are normalised here.
    """
    best_s = torch.empty((queries.shape[0], 0), device=queries.device)
    best_i = torch.empty((queries.shape[0], 0), dtype=torch.int64, device=queries.device)
    for start, stop, chunk in train.chunks():
        sims = queries @ F.normalize(chunk, dim=1).T
        s, i = sims.topk(min(k, stop - start), dim=1)
        best_s = torch.cat([best_s, s], dim=1)
        best_i = torch.cat([best_i, i + start], dim=1)
        if best_s.shape[1] > k:
            best_s, keep = best_s.topk(k, dim=1)
            best_i = best_i.gather(1, keep)
    return best_s, best_i


def vote(sims: torch.Tensor, neighbour_labels: torch.Tensor, num_classes: int, temperature: float) -> torch.Tensor:
    """Class scores ``(q, num_classes)``: each neighbour adds ``exp(sim / T)`` to its class."""
    votes = torch.zeros((sims.shape[0], num_classes), dtype=torch.float32, device=sims.device)
    return votes.scatter_add_(1, neighbour_labels, torch.exp(sims / temperature))


def rank_classes(votes: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` best classes per row; equal votes rank the smaller class index first (deterministic)."""
    return torch.sort(votes, dim=1, descending=True, stable=True).indices[:, :k]


@dataclass
class KnnResult:
    top1: float
    topk: float
    k: int
    predictions: np.ndarray       # (N_test, k) classes, best first
    seconds: float = 0.0
    config: Dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> Dict[str, float]:
        return {"top1": self.top1, f"top{self.k}": self.topk}

    def extra(self) -> Dict[str, Any]:
        return {"knn": self.config, "seconds": round(self.seconds, 3)}


@torch.no_grad()
def knn_probe(train_x: Any, train_y: np.ndarray, test_x: Any, test_y: np.ndarray, *,
              positions: Optional[np.ndarray] = None, num_classes: Optional[int] = None,
              config: Optional[KnnConfig] = None) -> KnnResult:
    """kNN top-1/top-k of ``test_x`` against the training rows ``positions`` (a label budget; ``None`` = all)."""
    cfg = (config or KnnConfig()).validate()
    positions = np.arange(train_x.shape[0], dtype=np.int64) if positions is None else np.asarray(positions, np.int64)
    if train_x.shape[1] != test_x.shape[1]:
        raise ProbeError(f"train features are {train_x.shape[1]}-d but evaluation features are {test_x.shape[1]}-d")
    if len(train_y) != train_x.shape[0] or len(test_y) != test_x.shape[0]:
        raise ProbeError("kNN: every feature row needs one label (train and evaluation)")
    if len(positions) == 0:
        raise ProbeError("kNN: the training budget is empty")
    labels = np.asarray(train_y[positions])
    num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ProbeError(f"kNN: training labels span [{labels.min()}, {labels.max()}] but num_classes={num_classes}")
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    train = Rows(train_x, positions, device, cfg.chunk_rows)
    train_labels = torch.as_tensor(labels, dtype=torch.int64, device=device)
    queries = Rows(test_x, None, device, cfg.query_chunk)
    kk = min(cfg.topk, num_classes)
    predictions = np.empty((len(queries), kk), dtype=np.int64)
    for start, stop, chunk in queries.chunks():
        sims, rows = nearest(train, F.normalize(chunk, dim=1), cfg.k)
        votes = vote(sims, train_labels[rows], num_classes, cfg.temperature)
        predictions[start:stop] = rank_classes(votes, kk).cpu().numpy()
    acc = topk_accuracy(predictions, np.asarray(test_y))
    return KnnResult(top1=acc["top1"], topk=acc.get(f"top{kk}", acc["top1"]), k=kk, predictions=predictions,
                     seconds=time.perf_counter() - t0,
                     config={"k": cfg.k, "temperature": cfg.temperature, "train_samples": int(len(positions))})
