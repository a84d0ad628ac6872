"""Linear probe on cached features: multinomial logistic regression, weight decay chosen on held-out labels.

The cached-feature protocol (a faster option, which the report always names as such) replaces the
90-epoch augmented SGD probe of SimCLR. The problem is convex, so we solve it to its optimum with
full-batch L-BFGS (strong-Wolfe line search) on standardized features, as Kornblith et al. (2019) and
SimCLR's transfer experiments do, rather than with minibatch SGD:

- no learning rate, batch size or epoch count to tune per budget, so 10k and 1M labels are solved by
  the same procedure and differences between budgets are differences of the representation;
- the weight-decay path is warm-started from strong to weak regularisation (and the final fit from the
  selected model), so most fits after the first converge in a few dozen iterations;
- each L-BFGS step is one streaming pass over the rows (chunked, float32 per chunk), so memory is the
  fp16 memmap plus one chunk on the CPU, or the fp16 rows on the GPU; nothing ever holds all features
  in float32.

Weight decay is chosen on a seeded ``heldout_fraction`` of the *training budget* (never on the
evaluation split): fit on the rest for every value of the grid, keep the best held-out top-1 (ties:
lower held-out loss, then stronger decay), then refit on the whole budget with that value.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ffcv_ssl.errors import UserError

from ._rows import DEFAULT_CHUNK_ROWS, Rows, resolve_device

PROTOCOL = ("cached frozen features (centre crop 0.875), standardized; multinomial logistic regression by "
            "full-batch L-BFGS; weight decay chosen on a seeded held-out part of the training budget")


class ProbeError(UserError):
    """Inputs a probe cannot run on (shapes, labels, budgets); raised before any work."""


@dataclass
class LinearProbeConfig:
    """Knobs of the cached-feature linear probe (all have working defaults).

    Attributes:
        weight_decays: L2 penalty grid (on ``0.5 * wd * |W|^2`` added to the *mean* cross-entropy), tried from
            the largest down. ``wd ~ 1/N`` matches scikit-learn's default ``C=1``.
        heldout_fraction: part of the training budget held out to choose the weight decay.
        seed: seed of the held-out split.
        patience: stop the grid after this many values in a row without a better held-out top-1 (0: never).
        max_iter: L-BFGS iterations per fit (each costs about one pass over the rows).
        history_size: L-BFGS memory.
        tolerance_grad, tolerance_change: L-BFGS stopping rules (max |gradient|, change of the loss).
        chunk_rows: rows converted to float32 at a time.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        topk: the second metric (top-5 in the paper's tables); capped at the number of classes.
    """

    weight_decays: Tuple[float, ...] = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
    heldout_fraction: float = 0.2
    seed: int = 0
    patience: int = 3
    max_iter: int = 200
    history_size: int = 20
    tolerance_grad: float = 1e-6
    tolerance_change: float = 1e-9
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    device: str = "auto"
    topk: int = 5

    def validate(self) -> "LinearProbeConfig":
        if not self.weight_decays or any(not (w >= 0 and math.isfinite(w)) for w in self.weight_decays):
            raise ProbeError(f"weight_decays {list(self.weight_decays)} must be a non-empty list of values >= 0")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ProbeError(f"heldout_fraction={self.heldout_fraction} must be in (0, 1), e.g. 0.2")
        if self.max_iter < 1 or self.history_size < 1 or self.chunk_rows < 1 or self.topk < 1:
            raise ProbeError("max_iter, history_size, chunk_rows and topk must be >= 1")
        if self.patience < 0:
            raise ProbeError(f"patience={self.patience} must be >= 0 (0 tries the whole grid)")
        return self


@dataclass
class LinearModel:
    """A fitted classifier in standardized coordinates: ``logits = ((x - mean) / std) @ weight + bias``."""

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    weight_decay: float
    iterations: int = 0
    evaluations: int = 0
    loss: float = float("nan")

    def logits(self, chunk: torch.Tensor) -> torch.Tensor:
        """Logits of a float32 chunk of raw features (standardized in place)."""
        chunk.sub_(self.mean).div_(self.std)
        return chunk @ self.weight + self.bias

    def in_coordinates(self, mean: torch.Tensor, std: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The same classifier expressed for features standardized with ``mean``/``std`` (a warm start)."""
        scale = (std / self.std).unsqueeze(1)
        bias = self.bias + ((mean - self.mean) / self.std) @ self.weight
        return self.weight * scale, bias

    def raw(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` acting on raw features: ``logits = x @ W + b`` (to save or inspect)."""
        weight = self.weight / self.std.unsqueeze(1)
        bias = self.bias - (self.mean / self.std) @ self.weight
        return weight.cpu().numpy(), bias.cpu().numpy()


def _standardizer(rows: Rows) -> Tuple[torch.Tensor, torch.Tensor]:
    mean, std = rows.moments()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))   # constant features: centre only
    return mean.float(), std.float()


def fit_logistic(rows: Rows, targets: torch.Tensor, num_classes: int, weight_decay: float, cfg: LinearProbeConfig,
                 stats: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                 init: Optional[LinearModel] = None) -> LinearModel:
    """Minimise mean cross-entropy + ``0.5 * weight_decay * |W|^2`` over ``rows`` by full-batch L-BFGS.

    Args:
        rows: the training rows (chunked reader).
        targets: ``(len(rows),)`` int64 labels on ``rows.device``.
        stats: ``(mean, std)`` of ``rows`` if already known (the grid reuses them).
        init: a previous model to warm-start from (any standardization; it is converted).
    """
    device = rows.device
    mean, std = stats if stats is not None else _standardizer(rows)
    if init is not None:
        w0, b0 = init.in_coordinates(mean, std)
    else:
        w0 = torch.zeros(rows.width, num_classes, device=device)
        b0 = torch.zeros(num_classes, device=device)
    weight = w0.detach().clone().requires_grad_(True)
    bias = b0.detach().clone().requires_grad_(True)
    n = len(rows)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=cfg.max_iter, max_eval=int(cfg.max_iter * 1.25) + 1,
                            tolerance_grad=cfg.tolerance_grad, tolerance_change=cfg.tolerance_change,
                            history_size=cfg.history_size, line_search_fn="strong_wolfe")

    lowest = [float("inf")]   # strong-Wolfe L-BFGS decreases monotonically: the lowest value is the final point's

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=False)
        total = torch.zeros((), device=device)
        for start, stop, chunk in rows.chunks():
            chunk.sub_(mean).div_(std)
            loss = F.cross_entropy(chunk @ weight + bias, targets[start:stop], reduction="sum") / n
            loss.backward()
            total += loss.detach()
        reg = 0.5 * weight_decay * (weight * weight).sum()
        reg.backward()
        value = total + reg.detach()
        lowest[0] = min(lowest[0], float(value))
        return value

    opt.step(closure)
    state = opt.state[weight]   # LBFGS keeps its counters under its first parameter
    return LinearModel(weight.detach(), bias.detach(), mean, std, float(weight_decay),
                       iterations=int(state.get("n_iter", 0)), evaluations=int(state.get("func_evals", 0)),
                       loss=lowest[0])


@torch.no_grad()
def predict(model: LinearModel, rows: Rows, k: int,
            targets: Optional[torch.Tensor] = None) -> Tuple[np.ndarray, float]:
    """Top-``k`` class predictions ``(len(rows), k)`` (best first) and, given targets, the mean loss."""
    out = np.empty((len(rows), k), dtype=np.int64)
    total = 0.0
    for start, stop, chunk in rows.chunks():
        logits = model.logits(chunk)
        out[start:stop] = logits.topk(k, dim=1).indices.cpu().numpy()
        if targets is not None:
            total += float(F.cross_entropy(logits, targets[start:stop], reduction="sum"))
    return out, total / max(len(rows), 1)


def topk_accuracy(topk: np.ndarray, targets: np.ndarray) -> Dict[str, float]:
    """``{"top1": ..., "top<k>": ...}`` from ``(N, k)`` predictions, best first."""
    targets = np.asarray(targets).reshape(-1, 1)
    hits = topk == targets
    result = {"top1": float(hits[:, 0].mean()) if len(hits) else 0.0}
    if topk.shape[1] > 1:
        result[f"top{topk.shape[1]}"] = float(hits.any(axis=1).mean()) if len(hits) else 0.0
    return result


def split_heldout(positions: np.ndarray, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Seeded split of training positions into (fit, held-out), both sorted; held-out has >= 1 sample."""
    positions = np.asarray(positions, dtype=np.int64)
    n_held = min(max(1, int(round(fraction * len(positions)))), len(positions) - 1)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4E1D]))
    order = rng.permutation(len(positions))
    return np.sort(positions[order[n_held:]]), np.sort(positions[order[:n_held]])


@dataclass
class WeightDecaySelection:
    """What the held-out selection did; every index is a position into the *training* features.

    Attributes:
        fit_positions, heldout_positions: the disjoint parts of the budget it trained and scored on.
        weight_decays, heldout_top1, heldout_loss: the grid values tried (largest first) and their scores.
        chosen: the selected weight decay.
        model: the classifier at ``chosen`` fitted on ``fit_positions`` (warm start of the final fit).
    """

    fit_positions: np.ndarray
    heldout_positions: np.ndarray
    weight_decays: List[float]
    heldout_top1: List[float]
    heldout_loss: List[float]
    chosen: float
    model: LinearModel
    seconds: float = 0.0


def select_weight_decay(train_x: Any, train_y: np.ndarray, positions: np.ndarray, num_classes: int,
                        cfg: LinearProbeConfig, device: Optional[torch.device] = None) -> WeightDecaySelection:
    """Choose the weight decay on a held-out part of ``positions``; takes no evaluation data by construction."""
    device = device or resolve_device(cfg.device)
    t0 = time.perf_counter()
    fit_pos, held_pos = split_heldout(positions, cfg.heldout_fraction, cfg.seed)
    fit_rows = Rows(train_x, fit_pos, device, cfg.chunk_rows)
    held_rows = Rows(train_x, held_pos, device, cfg.chunk_rows)
    fit_t = torch.as_tensor(np.asarray(train_y[fit_pos]), dtype=torch.int64, device=device)
    held_t = torch.as_tensor(np.asarray(train_y[held_pos]), dtype=torch.int64, device=device)
    held_y = held_t.cpu().numpy()
    stats = _standardizer(fit_rows)
    tried: List[float] = []
    accs: List[float] = []
    losses: List[float] = []
    models: List[LinearModel] = []
    best, since_best, model = -1, 0, None
    for wd in sorted(cfg.weight_decays, reverse=True):
        model = fit_logistic(fit_rows, fit_t, num_classes, wd, cfg, stats=stats, init=model)
        top, loss = predict(model, held_rows, 1, held_t)
        tried.append(float(wd))
        accs.append(float((top[:, 0] == held_y).mean()))
        losses.append(loss)
        models.append(model)
        if best < 0 or (accs[-1], -losses[-1]) > (accs[best], -losses[best]):
            best, since_best = len(tried) - 1, 0
        else:
            since_best += 1
            if cfg.patience and since_best >= cfg.patience:
                break
    return WeightDecaySelection(fit_pos, held_pos, tried, accs, losses, tried[best], models[best],
                                seconds=time.perf_counter() - t0)


@dataclass
class LinearProbeResult:
    """Outcome of ``linear_probe``: metrics on the evaluation split plus everything needed to audit them."""

    top1: float
    topk: float
    k: int
    weight_decay: float
    num_classes: int
    train_positions: np.ndarray
    selection: WeightDecaySelection
    model: LinearModel
    test_topk: np.ndarray                # (N_test, k) predicted classes, best first (hierarchical evaluation)
    seconds: Dict[str, float] = field(default_factory=dict)

    def metrics(self) -> Dict[str, float]:
        """For ``Results.metrics``."""
        return {"top1": self.top1, f"top{self.k}": self.topk}

    def extra(self) -> Dict[str, Any]:
        """For ``Results.extra``: the chosen weight decay and how it was chosen, sizes, timings."""
        sel = self.selection
        return {
            "weight_decay": self.weight_decay,
            "weight_decay_grid": sel.weight_decays,
            "heldout_top1": sel.heldout_top1,
            "heldout_samples": int(len(sel.heldout_positions)),
            "train_samples": int(len(self.train_positions)),
            "num_classes": self.num_classes,
            "solver": "lbfgs",
            "final_fit": {"iterations": self.model.iterations, "evaluations": self.model.evaluations,
                          "loss": self.model.loss},
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def _check_inputs(train_x: Any, train_y: np.ndarray, test_x: Any, test_y: np.ndarray,
                  positions: np.ndarray, num_classes: int) -> None:
    if len(train_x.shape) != 2 or len(test_x.shape) != 2:
        raise ProbeError(f"features must be 2-D (samples, width); got {list(train_x.shape)} and {list(test_x.shape)}")
    if train_x.shape[1] != test_x.shape[1]:
        raise ProbeError(f"train features are {train_x.shape[1]}-d but evaluation features are {test_x.shape[1]}-d; "
                         "extract both with the same checkpoint")
    for what, x, y in (("train", train_x, train_y), ("evaluation", test_x, test_y)):
        if len(y) != x.shape[0]:
            raise ProbeError(f"{what}: {x.shape[0]} feature rows but {len(y)} labels")
    if len(positions) < 2:
        raise ProbeError(f"the training budget has {len(positions)} sample(s); a probe needs at least 2 "
                         "(one to fit, one to choose the weight decay)")
    if positions[0] < 0 or positions[-1] >= train_x.shape[0] or np.any(np.diff(positions) <= 0):
        raise ProbeError("training positions must be sorted, unique and inside the training features")
    if num_classes < 2:
        raise ProbeError(f"num_classes={num_classes}: a classifier needs at least 2 classes")
    sub = np.asarray(train_y[positions])
    for what, y in (("train", sub), ("evaluation", np.asarray(test_y))):
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ProbeError(f"{what} labels span [{y.min()}, {y.max()}] but num_classes={num_classes}; "
                             "pass the dataset's number of classes (manifest num_classes)")


def linear_probe(train_x: Any, train_y: np.ndarray, test_x: Any, test_y: np.ndarray, *,
                 positions: Optional[np.ndarray] = None, num_classes: Optional[int] = None,
                 config: Optional[LinearProbeConfig] = None) -> LinearProbeResult:
    """Train on ``positions`` of the training features (a label budget), report top-1/top-k on the evaluation set.

    Args:
        train_x, test_x: ``(N, D)`` features: ``FeatureCache.features`` memmaps, ``ConcatFeatures``, arrays.
        train_y, test_y: fine labels (``FeatureCache.label_array(level)`` for another level).
        positions: sorted training rows to use (``budget_positions(...)``); ``None`` = all.
        num_classes: number of classes (the manifest's ``num_classes``); default: max training label + 1.
        config: solver and selection settings.
    """
    cfg = (config or LinearProbeConfig()).validate()
    positions = np.arange(train_x.shape[0], dtype=np.int64) if positions is None else np.asarray(positions, np.int64)
    if num_classes is None:
        num_classes = int(np.asarray(train_y[positions]).max()) + 1 if len(positions) else 0
    _check_inputs(train_x, train_y, test_x, test_y, positions, int(num_classes))
    device = resolve_device(cfg.device)
    k = min(cfg.topk, int(num_classes))

    selection = select_weight_decay(train_x, train_y, positions, int(num_classes), cfg, device)
    t0 = time.perf_counter()
    rows = Rows(train_x, positions, device, cfg.chunk_rows)
    targets = torch.as_tensor(np.asarray(train_y[positions]), dtype=torch.int64, device=device)
    model = fit_logistic(rows, targets, int(num_classes), selection.chosen, cfg, init=selection.model)
    del rows
    t1 = time.perf_counter()
    test_rows = Rows(test_x, None, device, cfg.chunk_rows)
    test_topk, _ = predict(model, test_rows, k)
    acc = topk_accuracy(test_topk, np.asarray(test_y))
    seconds = {"select": selection.seconds, "fit": t1 - t0, "predict": time.perf_counter() - t1}
    return LinearProbeResult(top1=acc["top1"], topk=acc.get(f"top{k}", acc["top1"]), k=k,
                             weight_decay=selection.chosen, num_classes=int(num_classes), train_positions=positions,
                             selection=selection, model=model, test_topk=test_topk, seconds=seconds)
