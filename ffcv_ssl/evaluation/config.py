"""``ffcv-ssl eval KIND CONFIG``: what to evaluate, on which betons, with which protocol."""
from dataclasses import dataclass, field
from typing import List

from omegaconf import MISSING

from ..errors import ConfigError
from ..loading.config import DataConfig, ViewConfig, supervised_view
from ..optim import OptimConfig


@dataclass
class LinearConfig:
    """Cached-feature linear probe (L-BFGS, weight decay chosen on 20% of the training budget)."""

    weight_decays: List[float] = field(default_factory=lambda: [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5,
                                                                1e-5, 3e-6, 1e-6])
    heldout_fraction: float = 0.2
    max_iter: int = 200
    patience: int = 3


@dataclass
class KnnSection:
    k: int = 20
    temperature: float = 0.07


@dataclass
class TrainSection:
    """Fine-tuning / from scratch / reference linear protocol: the training engine on a label budget."""

    epochs: int = 90
    batch_size: int = 1024
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="sgd", lr=0.1, weight_decay=1e-4,
                                                                   epochs=90, warmup_epochs=0))
    label_smoothing: float = 0.0
    precision: str = "auto"


@dataclass
class EvalConfig:
    """One evaluation job: a representation (``checkpoint``), labelled data, budgets, a protocol.

    ``checkpoint``: a pretraining run dir, a backbone.pth, or ``random`` (an untrained ``arch``).
    ``budgets``: labelled training images, e.g. [10k, 50k, 125k, 250k, 500k, 1M, all] (nested subsets).
    """

    checkpoint: str = ""                              # required except for kind scratch
    arch: str = ""                                    # required for random; checked against the checkpoint
    concat_with: List[str] = field(default_factory=list)   # concat: further checkpoints whose features are appended
    train: str = MISSING                              # labelled training beton
    test: str = MISSING                               # evaluation beton
    cross_dataset: bool = False                       # test is another dataset on purpose: class indices compared
                                                      # as they are (default: refuse a label-space mismatch)
    budgets: List[str] = field(default_factory=lambda: ["all"])
    budget_seed: int = 0
    balanced_budgets: bool = False
    label_level: str = "label"                        # train and score at this integer field (e.g. genus)
    levels: List[str] = field(default_factory=list)   # hierarchical: levels to report (default: all of the beton)
    hierarchy_file: str = ""                          # hierarchical: parent-child CSV or ImageNet meta.mat
    out_dir: str = "runs/eval"
    cache_dir: str = "runs/features"
    seed: int = 0
    device: str = "auto"
    batch_size: int = 256
    num_workers: int = 0
    eval_size: int = 224
    eval_center_ratio: float = 0.875
    linear: LinearConfig = field(default_factory=LinearConfig)
    knn: KnnSection = field(default_factory=KnnSection)
    train_protocol: TrainSection = field(default_factory=TrainSection)
    train_views: List[ViewConfig] = field(default_factory=lambda: [supervised_view()])

    def validate(self) -> None:
        if self.batch_size < 1 or self.num_workers < 0:
            raise ConfigError("batch_size must be >= 1 and num_workers >= 0")
        if not self.budgets:
            raise ConfigError("budgets must list at least one budget (e.g. [all] or [10k, 50k])")

    def data_config(self) -> DataConfig:
        return DataConfig(train=self.train, val=self.test, batch_size=self.batch_size, num_workers=self.num_workers,
                          order="sequential", drop_last=False, eval_size=self.eval_size,
                          eval_center_ratio=self.eval_center_ratio)
