"""``results.json``: one file per evaluation, with everything that identifies it, so the report never guesses.

Every evaluation (linear probe, fine-tuning, supervised from scratch, kNN, hierarchical, the reference
linear protocol) writes exactly one of these. The report aggregates them into the paper's tables and
figures (Cole et al., CVPR 2022: Fig 2, Tables 1-3, Fig 4, Fig 5).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import UserError
from .evaluation.kinds import RESULT_KINDS as KINDS
from .files import atomic_write_text, read_json

SCHEMA = "ffcv-ssl/results/1"

METHODS = ("simclr", "supervised", "byol", "moco", "random", "none")


class ResultsError(UserError):
    """A results file that cannot be read or does not follow the schema."""


@dataclass
class PretrainInfo:
    """The representation being evaluated.

    Attributes:
        method: ``simclr``, ``supervised``, ``byol``, ``moco``; ``random`` for an untrained backbone;
            ``none`` when there is no pretraining (supervised from scratch).
        dataset: pretraining dataset (``inat21``, ``imagenet``, ``places365``, ``glc20``, ``digits``) or
            ``pool`` (then ``pool`` lists the parts).
        size: number of pretraining images; ``None`` means the whole split.
        corruption: canonical corruption string (``none``, ``jpeg:quality=10``,
            ``downsample:factor=4,size=256``, ...), applied to the pretraining images only.
    """

    method: str
    dataset: str = ""
    size: Optional[int] = None
    corruption: str = "none"
    pool: List[str] = field(default_factory=list)
    arch: str = "resnet50"
    epochs: Optional[int] = None
    checkpoint: str = ""
    checkpoint_sha256: str = ""
    seed: int = 0


@dataclass
class EvalInfo:
    """How the representation was evaluated.

    Attributes:
        kind: one of ``KINDS``; ``linear`` is the cached-feature probe, ``reference_linear`` the
            augmented 90-epoch SGD protocol of SimCLR (reported separately).
        budget: labelled training images used; ``None`` means all of them.
        protocol: one human-readable line (e.g. "cached features, L-BFGS logistic regression").
    """

    kind: str
    dataset: str
    budget: Optional[int] = None
    protocol: str = ""
    train: str = ""
    test: str = ""
    label_level: str = "label"
    seed: int = 0


@dataclass
class Results:
    pretrain: PretrainInfo
    eval: EvalInfo
    metrics: Dict[str, float]                     # at least top1 (fraction in [0, 1]); top5 when defined
    levels: Dict[str, float] = field(default_factory=dict)   # hierarchical: top-1 per level, coarse -> fine
    concat: List[PretrainInfo] = field(default_factory=list) # Table 3: other backbones concatenated
    extra: Dict[str, Any] = field(default_factory=dict)      # timings, chosen weight decay, ...
    schema: str = SCHEMA

    def validate(self) -> "Results":
        if self.schema != SCHEMA:
            raise ResultsError(f"unknown results schema {self.schema!r} (this tool reads {SCHEMA})")
        for info in [self.pretrain, *self.concat]:
            if info.method not in METHODS:
                raise ResultsError(f"pretrain.method {info.method!r} is not one of {', '.join(METHODS)}")
        if self.eval.kind not in KINDS:
            raise ResultsError(f"eval.kind {self.eval.kind!r} is not one of {', '.join(KINDS)}")
        if "top1" not in self.metrics:
            raise ResultsError("metrics must contain top1")
        for name, value in {**self.metrics, **self.levels}.items():
            if name.startswith("top") and not 0.0 <= float(value) <= 1.0:
                raise ResultsError(f"metric {name}={value} must be a fraction in [0, 1]")
        return self

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _build(cls, data: Dict[str, Any], where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ResultsError(f"{where}: unknown field(s) {', '.join(unknown)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ResultsError(f"{where}: {exc}") from None


def results_from_dict(data: Dict[str, Any]) -> Results:
    """Parse and validate a results dict (as loaded from JSON)."""
    if not isinstance(data, dict):
        raise ResultsError("results must be a JSON object")
    if data.get("schema") != SCHEMA:
        raise ResultsError(f"unknown results schema {data.get('schema')!r} (this tool reads {SCHEMA})")
    body = dict(data)
    try:
        pretrain = _build(PretrainInfo, body.pop("pretrain"), "pretrain")
        ev = _build(EvalInfo, body.pop("eval"), "eval")
        concat = [_build(PretrainInfo, c, "concat") for c in body.pop("concat", [])]
    except KeyError as exc:
        raise ResultsError(f"missing section {exc}") from None
    return _build(Results, {**body, "pretrain": pretrain, "eval": ev, "concat": concat}, "results").validate()


def write_results(results: Results, path: os.PathLike | str) -> Path:
    """Validate, then write atomically (temp + rename)."""
    results.validate()
    return atomic_write_text(path, json.dumps(results.to_dict(), indent=1) + "\n")


def read_results(path: os.PathLike | str) -> Results:
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file")
    data = read_json(path, ResultsError)
    try:
        return results_from_dict(data)
    except ResultsError as exc:
        raise ResultsError(f"{path}: {exc}") from None
