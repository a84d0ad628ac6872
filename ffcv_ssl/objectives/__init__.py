"""Objectives (head + loss over a timm backbone) as a registry, with one typed config per objective.

A *method* is a timm backbone plus a registered objective: ``build_objective(cfg, backbone, num_classes)``
returns an ``nn.Module`` that owns the online backbone, its heads and (BYOL, MoCo) the momentum target.
Every objective has the same surface, so the training loop never branches on a method's name::

    out = objective(views, labels)      # views: list of (B, 3, H, W); out["loss"] plus loggable scalars
    out["loss"].backward(); optimizer.step()
    objective.after_step(progress)      # EMA / queue bookkeeping, progress in [0, 1]

This module stays free of torch at import time (configs are loaded by ``ffcv-ssl --help``-fast code paths):
the built-in objectives are imported on first use of ``OBJECTIVES`` or ``build_objective``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Type

from ..errors import ConfigError, UserError
from ..registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "OBJECTIVES", "register_objective", "build_objective", "known_objectives",
    "ObjectiveConfig", "SimCLRConfig", "SupervisedConfig", "BYOLConfig", "MoCoConfig",
]

# name -> module that registers it; imported lazily so that configs validate without importing torch.
_REGISTRY: Registry[type] = Registry("objective", package=__name__, error=ConfigError, key="objective.name",
                                     builtins=("simclr", "supervised", "byol", "moco"))


def _check_range(key: str, value: float, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> None:
    bad_lo = value <= lo if lo_open else value < lo
    bad_hi = value >= hi if hi_open else value > hi
    if bad_lo or bad_hi:
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ConfigError(f"config key '{key}' must be in {interval}, got {value}")


@dataclass
class SimCLRConfig:
    """NT-Xent with a projection head (SimCLR v2 defaults: arXiv 2006.10029, Sec. 2 and App. B).

    Attributes:
        temperature: softmax temperature tau; 0.1 is SimCLR's value for large batches (0.2-0.5 below 512).
        proj_layers: linear layers in the head: 3 is SimCLR v2, 2 is SimCLR v1, 1 a linear projection.
        proj_hidden_dim: width of the hidden layers; 0 means the backbone's feature width (2048 for a
            ResNet-50, as in SimCLR v2).
        proj_dim: output width (128).
        proj_bn: batch norm after every hidden linear layer (SimCLR uses it; global BN under DDP).
        proj_last_bn: batch norm on the output layer as well (SimCLR v2 does).
        positives: 'instance' (views of the same image, SimCLR) or 'label' (same class: SupCon's L_out).
        gather_negatives: use the projections of every process as negatives (SimCLR's global batch);
            False restricts negatives to the local batch.
    """

    temperature: float = 0.1
    proj_layers: int = 3
    proj_hidden_dim: int = 0
    proj_dim: int = 128
    proj_bn: bool = True
    proj_last_bn: bool = True
    positives: str = "instance"
    gather_negatives: bool = True

    def validate(self) -> None:
        _check_range("objective.simclr.temperature", self.temperature, 0.0, float("inf"), lo_open=True)
        if self.proj_layers < 1 or self.proj_dim < 1 or self.proj_hidden_dim < 0:
            raise ConfigError("objective.simclr: proj_layers and proj_dim must be >= 1 and proj_hidden_dim >= 0 "
                              f"(got {self.proj_layers}, {self.proj_dim}, {self.proj_hidden_dim})")
        if self.positives not in ("instance", "label"):
            raise ConfigError(f"config key 'objective.simclr.positives' must be 'instance' or 'label', "
                              f"got {self.positives!r}")


@dataclass
class SupervisedConfig:
    """Cross-entropy on a linear head over the pooled features (the paper's supervised baseline).

    Attributes:
        label_smoothing: epsilon of label smoothing (0 disables it).
    """

    label_smoothing: float = 0.0

    def validate(self) -> None:
        _check_range("objective.supervised.label_smoothing", self.label_smoothing, 0.0, 1.0, hi_open=True)


@dataclass
class BYOLConfig:
    """BYOL (arXiv 2006.07733, Sec. 3.3 and App. J): projector, predictor, EMA target, symmetric loss.

    Attributes:
        proj_hidden_dim: projector hidden width (4096).
        proj_dim: projector output width (256).
        pred_hidden_dim: predictor hidden width (4096).
        base_momentum: target EMA momentum at the start of training (0.996).
        final_momentum: momentum at the end of training (1.0).
        momentum_schedule: 'cosine' (BYOL: tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2) or 'constant'.
    """

    proj_hidden_dim: int = 4096
    proj_dim: int = 256
    pred_hidden_dim: int = 4096
    base_momentum: float = 0.996
    final_momentum: float = 1.0
    momentum_schedule: str = "cosine"

    def validate(self) -> None:
        _validate_momentum("objective.byol", self.base_momentum, self.final_momentum, self.momentum_schedule)


@dataclass
class MoCoConfig:
    """MoCo v2 (arXiv 2003.04297): momentum key encoder, a queue of negatives, an MLP head.

    Attributes:
        queue_size: number of negative keys kept (65536).
        temperature: softmax temperature (0.2).
        base_momentum: key-encoder EMA momentum (0.999).
        final_momentum: momentum at the end of training when momentum_schedule is 'cosine'.
        momentum_schedule: 'constant' (MoCo v2) or 'cosine' (MoCo v3 style).
        proj_layers: layers of the query/key head (2: MoCo v2's MLP head).
        proj_hidden_dim: hidden width of the head (2048); 0 means the backbone's feature width.
        proj_dim: key/query width (128).
        proj_bn: batch norm in the head's hidden layers (MoCo v2: no).
        symmetric: also use view 1 as query and view 0 as key (MoCo v3 style; both views' keys are queued).
            False is MoCo v2: queries from view 0, keys from view 1.
        shuffle_bn: Shuffle BN (MoCo v1 Sec. 3.3, kept by v2): the key encoder's batch norm sees a random
            subset of the batch that differs from the query's, so a query cannot find its positive through
            shared batch statistics. Under DDP the key images of all processes are shuffled with one
            permutation (rank 0's, broadcast) and each process encodes its shard with per-process BN, then
            the keys are unshuffled (the reference's ``_batch_shuffle_ddp``); the key encoder then keeps
            per-process BN even when ``model.sync_bn`` makes the query encoder global. In one process the
            key batch is permuted and split into ``shuffle_bn_groups`` BN groups. False: plain BN (MoCo v3).
        shuffle_bn_groups: BN groups of the key batch in ONE process (ignored under DDP, where each
            process is one group as in the reference). 8 reproduces the reference's 8 GPUs x 32 images at
            its batch of 256; never more than (key images) / 2 groups are formed, since BN needs 2 samples.
    """

    queue_size: int = 65536
    temperature: float = 0.2
    base_momentum: float = 0.999
    final_momentum: float = 1.0
    momentum_schedule: str = "constant"
    proj_layers: int = 2
    proj_hidden_dim: int = 2048
    proj_dim: int = 128
    proj_bn: bool = False
    symmetric: bool = False
    shuffle_bn: bool = True
    shuffle_bn_groups: int = 8

    def validate(self) -> None:
        _check_range("objective.moco.temperature", self.temperature, 0.0, float("inf"), lo_open=True)
        if self.queue_size < 1:
            raise ConfigError(f"config key 'objective.moco.queue_size' must be >= 1, got {self.queue_size}")
        if self.shuffle_bn_groups < 1:
            raise ConfigError("config key 'objective.moco.shuffle_bn_groups' must be >= 1, got "
                              f"{self.shuffle_bn_groups}")
        _validate_momentum("objective.moco", self.base_momentum, self.final_momentum, self.momentum_schedule)


def _validate_momentum(prefix: str, base: float, final: float, schedule: str) -> None:
    _check_range(f"{prefix}.base_momentum", base, 0.0, 1.0)
    _check_range(f"{prefix}.final_momentum", final, 0.0, 1.0)
    if schedule not in ("cosine", "constant"):
        raise ConfigError(f"config key '{prefix}.momentum_schedule' must be 'cosine' or 'constant', got {schedule!r}")


@dataclass
class ObjectiveConfig:
    """Which objective to train (``name``) and the typed parameters of every objective.

    Only the section named by ``name`` is used; keeping all of them typed means a typo such as
    ``objective.moco.queue_sise=4096`` fails at load time with the closest valid key.
    """

    name: str = "simclr"
    simclr: SimCLRConfig = field(default_factory=SimCLRConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    byol: BYOLConfig = field(default_factory=BYOLConfig)
    moco: MoCoConfig = field(default_factory=MoCoConfig)

    def validate(self) -> None:
        check_objective_name(self.name)

    def section(self) -> Any:
        """The typed parameters of the selected objective (``cfg.simclr`` when ``cfg.name == 'simclr'``)."""
        return getattr(self, self.name)


def known_objectives() -> list[str]:
    """Names accepted by ``objective.name`` (built-ins and anything registered since), without importing torch."""
    return _REGISTRY.names()


def check_objective_name(name: str) -> None:
    """Raise a one-line ``ConfigError`` naming the closest valid objective when ``name`` is unknown."""
    _REGISTRY.check(name)


def register_objective(name: str) -> Callable[[type], type]:
    """Class decorator: ``@register_objective("simclr")`` makes the class buildable by name.

    The class is constructed as ``cls(backbone, params, num_classes)`` where ``params`` is
    ``getattr(objective_config, name)``: a new objective adds its typed section to ``ObjectiveConfig``.
    """
    return _REGISTRY.register(name)


def _load_builtins() -> Registry[type]:
    return _REGISTRY.load()


def __getattr__(name: str) -> Any:
    """``OBJECTIVES`` is the registry dict, filled with the built-ins on first access (PEP 562)."""
    if name == "OBJECTIVES":
        return _load_builtins()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_objective(cfg: ObjectiveConfig, backbone: "nn.Module", num_classes: int = 0) -> "nn.Module":
    """Build the objective named by ``cfg.name`` around ``backbone`` (which it then owns).

    Args:
        cfg: the objective section of the run config.
        backbone: a timm model built with ``num_classes=0`` (pooled features, ``backbone.num_features``).
        num_classes: number of labels of the training set (used by 'supervised'; 0 when unknown).

    Raises:
        ConfigError: unknown objective name (one line, with the closest valid name).
        UserError: the objective cannot run with these arguments (e.g. supervised with num_classes < 2).
    """
    check_objective_name(cfg.name)
    registry = _load_builtins()
    params = getattr(cfg, cfg.name, None)
    if params is None:
        raise UserError(f"objective '{cfg.name}' is registered but ObjectiveConfig has no '{cfg.name}' section; "
                        f"add a typed '{cfg.name}' field to ObjectiveConfig")
    cls: Type[Any] = registry[cfg.name]
    return cls(backbone, params, num_classes)
