"""Where a backbone to evaluate comes from: a pretraining run, an exported ``backbone.pth``, or ``random``.

Every source resolves to the same thing: a timm model with no classifier, its architecture, a content
hash (the feature cache is keyed by it) and the ``PretrainInfo`` fields that results.json records.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict

import torch

from .errors import UserError

RANDOM = "random"


@dataclass
class BackboneSource:
    arch: str
    sha256: str
    pretrain: Dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def build(self, seed: int = 0) -> torch.nn.Module:
        """The backbone (random sources are initialised from ``seed``, the same way every time)."""
        from .models import ModelConfig, build_backbone

        if not self.path:
            torch.manual_seed(seed)
            return build_backbone(ModelConfig(arch=self.arch, channels_last=True))
        from .checkpoint import load_backbone

        model = load_backbone(self.path, self.arch)
        return model.to(memory_format=torch.channels_last)


def resolve_backbone(spec: str, arch: str = "", seed: int = 0) -> BackboneSource:
    """``spec``: a pretraining run directory, a ``backbone.pth`` (with its ``.json``), or ``random``.

    Raises:
        UserError: missing files, a training run that has not finished, ``random`` without an arch, or an
            ``arch`` that contradicts the one the backbone was trained with (one line each).
    """
    from .checkpoint import check_backbone_file
    from .models import check_arch

    if spec == RANDOM:
        if not arch:
            raise UserError("checkpoint=random needs arch=NAME (the timm architecture to initialise)")
        check_arch(arch)
        import hashlib

        digest = hashlib.sha256(f"random-{arch}-seed{seed}".encode()).hexdigest()   # cache key of this init
        return BackboneSource(arch, digest, {"method": "random", "arch": arch, "seed": seed})
    path = Path(spec)
    if path.is_dir():
        if not (path / "backbone.pth").exists():
            hint = " (training has not finished: see its progress.json)" if (path / "progress.json").exists() else ""
            raise UserError(f"{path} has no backbone.pth{hint}; give a finished pretraining run or a backbone file")
        path = path / "backbone.pth"
    if not path.exists():
        raise UserError(f"checkpoint {spec} does not exist; give a pretraining run directory, a backbone.pth or 'random'")
    meta_file = path.with_name(path.name + ".json")
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    recorded = meta.get("arch", "")
    if arch and recorded and arch != recorded:
        raise UserError(f"checkpoint {spec} is a {recorded} backbone, not {arch}; drop arch= or set arch={recorded}")
    arch = arch or recorded
    if not arch:
        raise UserError(f"{path}: no {meta_file.name} beside it to tell the architecture; pass arch=NAME")
    check_arch(arch)
    check_backbone_file(path, arch)
    from .util import file_sha256

    pretrain = dict(meta.get("pretrain") or {})
    pretrain.setdefault("arch", arch)
    pretrain["checkpoint"] = str(path)
    sha = meta.get("sha256") or file_sha256(path)
    pretrain["checkpoint_sha256"] = sha
    return BackboneSource(arch, sha, pretrain, str(path))


def load_into(backbone: torch.nn.Module, spec: str, arch: str) -> BackboneSource:
    """Copy the weights of ``spec`` into ``backbone`` (fine-tuning starts from a pretrained backbone)."""
    source = resolve_backbone(spec, arch)
    if not source.path:
        raise UserError("init_from=random makes no sense: a fresh backbone is already random; leave init_from empty")
    weights = source.build().state_dict()
    missing, unexpected = backbone.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise UserError(f"{spec} does not fit model.arch={arch} (missing {len(missing)}, unexpected "
                        f"{len(unexpected)} keys)")
    return source
