"""The rehearsal profile: what ``ffcv-ssl rehearse`` changes on top of an unchanged sweep file, and nothing else.

1. Sweep variables (``--set``), where the sweep declares them: ``raw`` -> the fixture datasets, ``data`` and
   ``runs`` -> folders under ``--out``, ``arch`` -> a narrow ResNet (``small_resnets.py``), ``epochs`` -> 1.
2. Counts, through the sweep machinery's argument hook (``slurm/sweep.py``: ``ArgsHook``): every count n of
   images (``--subset N``, ``--part FILE:N``, ``data.subset=N``, each label budget) becomes n / 1000
   (the map below), so 50k ⊂ 125k ⊂ 250k ⊂ 500k ⊂ 1M stay nested with the same ratios; ``all`` stays all.
   A count that 1000 does not divide is an error (the profile never rounds silently).
3. Appended overrides (the last value of a key wins): tiny images and batches, one epoch, few L-BFGS
   iterations, one worker; storage capped at 64 px (``--max-resolution``), one writer process.
4. Resources: every stage asks for 1 CPU, no GPU, 3 GB, 60 min (the real ones ask for 8 GPUs and 480 GB).

File names keep the sweep's own values (``inat21_train_1000000.beton`` holds 1000 images), so the rehearsal
tree has exactly the paths of a real run and sweeps that share a beton or a pretraining share it here too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import UserError

SCALE = 1000
#: The documented map (docs/sweeps.md, "Rehearsal"); any other count n maps to n / SCALE the same way.
SCALE_MAP = {"10k": "10", "50k": "50", "125k": "125", "250k": "250", "500k": "500", "1M": "1000", "all": "all"}

_COUNT = re.compile(r"^(\d+(?:\.\d+)?)([kKmM]?)$")
_PART = re.compile(r"^(.*):([0-9]+(?:\.[0-9]+)?[kKmM]?)$")


def parse_count(text: str) -> Optional[int]:
    """``50000``, ``50k``, ``1M`` -> an int; ``all`` -> None."""
    t = str(text).strip()
    if t.lower() in ("all", "none", "full"):
        return None
    m = _COUNT.match(t)
    if not m:
        raise UserError(f"rehearsal profile: {text!r} is not a count (50000, 50k, 1M or all)")
    return int(round(float(m.group(1)) * {"": 1, "k": 1000, "m": 1_000_000}[m.group(2).lower()]))


@dataclass
class RehearsalProfile:
    """The rehearsal scale-down (defaults: what ``ffcv-ssl rehearse`` and its tests use)."""

    scale: int = SCALE
    arch: str = "ssl_resnet10_tiny"          # small_resnets.py: a narrow ResNet-10 for 32-px inputs
    image_size: int = 32                     # pretraining views, eval centre crops, fine-tuning views
    max_resolution: int = 64                 # stored images (the fixtures are 64 x 48; GLC20 patches 256)
    epochs: int = 1                          # pretraining, fine-tuning and scratch: a few optimisation steps
    pretrain_batch: int = 32                 # 50 images -> 1 step, 1000 images -> 31 steps
    eval_batch: int = 256
    linear_max_iter: int = 20
    weight_decays: str = "[1e-3,1e-4]"
    writer_workers: int = 1                  # a pool of processes costs more than it saves on ~1000 tiny images
    cpus: int = 1
    mem_gb: int = 3
    timeout_min: int = 60                    # per array task, i.e. per pack of up to 8 jobs (>= 15: submitit
                                             # counts any USR2 as a time-out below ~12.5 min)
    scaled: Dict[int, int] = field(default_factory=dict)   # filled while rewriting: scaled count -> original

    # ---------------------------------------------------------------- counts
    def count(self, text: str, where: str) -> str:
        n = parse_count(text)
        if n is None:
            return "all"
        if n % self.scale:
            raise UserError(f"{where}: count {text} is not a multiple of {self.scale}; the rehearsal profile maps "
                            f"n -> n/{self.scale} exactly (docs/sweeps.md, Rehearsal)")
        self.scaled[n // self.scale] = n
        return str(n // self.scale)

    def budgets(self, text: str, where: str) -> str:
        inner = text.strip()
        if not (inner.startswith("[") and inner.endswith("]")):
            return self.count(inner, where)
        return "[" + ",".join(self.count(b, where) for b in inner[1:-1].split(",") if b.strip()) + "]"

    # ---------------------------------------------------------------- the sweep hook
    def sweep_vars(self, declared: Sequence[str], raw: str, data: str, runs: str) -> List[str]:
        """``--set`` values for the variables the sweep declares (an undeclared one is left out)."""
        values = {"raw": raw, "data": data, "runs": runs, "arch": self.arch, "epochs": str(self.epochs)}
        return [f"{k}={v}" for k, v in values.items() if k in declared]

    def resources(self, stage) -> None:
        """Shrink a stage's resource request in memory (the sweep file is not touched)."""
        from ffcv_ssl.slurm.sweep import Resources

        stage.resources = Resources(nodes=1, gpus_per_node=0, cpus_per_task=self.cpus, mem_gb=self.mem_gb,
                                    timeout_min=self.timeout_min)

    def __call__(self, stage, config: str, args: Tuple[str, ...]) -> Tuple[str, ...]:
        """The ``ArgsHook``: rewrite one job's rendered arguments."""
        where = f"stage {stage.name}"
        if stage.kind == "write":
            return self._write(list(args), where)
        out = []
        for tok in args:
            key, sep, value = tok.partition("=")
            if sep and key in ("budgets",):
                tok = f"{key}={self.budgets(value, where)}"
            elif sep and key == "data.subset":
                tok = f"{key}={self.count(value, where)}"
            out.append(tok)
        extra = self._pretrain(config) if stage.kind == "pretrain" else self._eval(config)
        return tuple(out + extra)

    # ---------------------------------------------------------------- per kind
    def _write(self, args: List[str], where: str) -> Tuple[str, ...]:
        out: List[str] = []
        i = 0
        while i < len(args):
            tok = args[i]
            if tok == "--subset" and i + 1 < len(args):
                out += [tok, self.count(args[i + 1], where)]
                i += 2
                continue
            if tok.startswith("--subset="):
                tok = "--subset=" + self.count(tok.split("=", 1)[1], where)
            elif tok == "--part" and i + 1 < len(args):
                out.append(tok)
                tok, i = args[i + 1], i + 1
                m = _PART.match(tok)
                if m:
                    tok = f"{m.group(1)}:{self.count(m.group(2), where)}"
            out.append(tok)
            i += 1
        if out and out[0] != "pool":
            out += ["--max-resolution", str(self.max_resolution)]
        if not any(t == "--workers" or t.startswith("--workers=") for t in out):
            out += ["--workers", str(self.writer_workers)]
        return tuple(out)

    def _pretrain(self, config: str) -> List[str]:
        views = _list_len(config, ("data", "views"), default=1)
        return ([f"model.arch={self.arch}", f"optim.epochs={self.epochs}", "optim.warmup_epochs=0",
                 f"data.batch_size={self.pretrain_batch}", "data.num_workers=1", f"data.eval_size={self.image_size}",
                 "checkpoint_every=0", "tensorboard=false", "log_every=5"]
                + [f"data.views.{i}.size={self.image_size}" for i in range(views)])

    def _eval(self, config: str) -> List[str]:
        views = _list_len(config, ("train_views",), default=1)
        return ([f"arch={self.arch}", f"eval_size={self.image_size}", f"batch_size={self.eval_batch}",
                 "num_workers=1", f"linear.max_iter={self.linear_max_iter}",
                 f"linear.weight_decays={self.weight_decays}", f"train_protocol.epochs={self.epochs}",
                 f"train_protocol.batch_size={self.pretrain_batch}", f"train_protocol.optim.epochs={self.epochs}",
                 "train_protocol.optim.warmup_epochs=0"]
                + [f"train_views.{i}.size={self.image_size}" for i in range(views)])

    # ---------------------------------------------------------------- back to the paper's scale
    def paper_count(self, n: Optional[int], full_split: int) -> Optional[int]:
        """A rehearsal size or budget at the paper's scale (n x scale); a whole split (>= full_split) stays."""
        if n is None or n >= full_split:
            return n
        return n * self.scale


def _list_len(config: str, path: Tuple[str, ...], default: int) -> int:
    """Length of a list in a YAML config (views of a pretraining config, train views of an eval config)."""
    if not config:
        return default
    from omegaconf import OmegaConf

    try:
        from ffcv_ssl.paths import resolve_config_path

        node = OmegaConf.load(str(resolve_config_path(config)))
    except Exception:  # noqa: BLE001 - a bad config is reported by the job's own validation, by name
        return default
    for key in path:
        node = node.get(key) if node is not None and hasattr(node, "get") else None
    return len(node) if node is not None and hasattr(node, "__len__") else default
