"""The pretraining config: data + model + objective + optimiser + run settings (SimCLR v2 defaults)."""
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..loading.config import DataConfig
from ..models import ModelConfig
from ..objectives import ObjectiveConfig
from ..optim import OptimConfig

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class TrainConfig:
    """``ffcv-ssl pretrain CONFIG [key=value ...]``.

    ``data.batch_size`` is the GLOBAL batch (SimCLR: 4096); each of the N processes loads 1/N of it.
    Epochs and warm-up live in ``optim`` (they define the schedule).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0                      # model init, shuffling and augmentation
    out_dir: str = "runs/pretrain"     # config.yaml, metrics.jsonl, checkpoints/, backbone.pth, summary.json
    device: str = "auto"               # auto: cuda when available, else cpu
    precision: str = "auto"            # auto: bf16 autocast on GPU, fp32 on CPU
    checkpoint_every: int = 0          # optimizer steps between checkpoints (0: at epoch ends only)
    keep_checkpoints: int = 2
    log_every: int = 10                # steps between metric lines
    max_steps: int = 0                 # stop (with a checkpoint) after this many steps in total; 0: train fully
    tensorboard: bool = True           # also write TensorBoard events when the tensorboard package is installed
    init_from: str = ""                # start the backbone from an exported backbone.pth or a pretraining run dir
    freeze_backbone: bool = False      # train only the heads (frozen backbone, BN in eval mode): linear protocol
    num_classes: int = 0               # classifier width (supervised); 0: the training beton's manifest num_classes
    resume_with_changes: bool = False  # resume although data/model/objective/optim/seed differ from the checkpoint;
                                       # the step ranges of each setting are recorded in provenance.json

    def validate(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"device={self.device!r} must be one of {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r} must be one of {', '.join(PRECISIONS)}")
        if self.num_classes < 0:
            raise ConfigError(f"num_classes={self.num_classes} must be >= 0 (0: from the beton's manifest)")
        if self.checkpoint_every < 0 or self.log_every < 1 or self.max_steps < 0 or self.keep_checkpoints < 1:
            raise ConfigError("need checkpoint_every >= 0, log_every >= 1, max_steps >= 0, keep_checkpoints >= 1")
