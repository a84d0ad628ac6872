"""``run_eval(kind, cfg)``: extract (or reuse) features, run one protocol per budget, write results.json files.

Kinds are a registry (``EVALUATIONS``): linear, knn, hierarchical and concat read cached features;
finetune, scratch and reference_linear run the training engine on a label budget and score ``test``.
Every evaluation writes ``out_dir/<kind>-<budget>[-<level>]/results.json`` with what identifies it.
"""
from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch

from ..errors import UserError
from ..results import EvalInfo, PretrainInfo, Results, write_results
from ..backbones import BackboneSource, resolve_backbone
from .config import EvalConfig
from .kinds import EVALUATIONS, RESULT_KIND
from .label_space import LabelSpace, check_label_space

Evaluation = Callable[[EvalConfig, Optional[BackboneSource], LabelSpace], List[Path]]


def register_evaluation(name: str) -> Callable[[Evaluation], Evaluation]:
    """``@register_evaluation("knn")``: the kind must also be declared in ``kinds.KIND_HELP`` (its help line)."""
    return EVALUATIONS.register(name)


def _device(cfg: EvalConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is visible; use device=auto")
    return torch.device(cfg.device)


def pretrain_info(source: BackboneSource) -> PretrainInfo:
    known = {f.name for f in fields(PretrainInfo)}
    data = {k: v for k, v in source.pretrain.items() if k in known}
    data.setdefault("method", "random")
    data["size"] = data.get("size")
    return PretrainInfo(**data)


def _budget_label(budget: Optional[int]) -> str:
    from dataset_writers.subsets import budget_name

    return budget_name(budget)


# ------------------------------------------------------------------------------------------- features

def extract_features(source: BackboneSource, beton: str, cfg: EvalConfig):
    """The feature cache of (backbone, beton, eval pipeline): reused when valid, else extracted now."""
    from ..console import progress_bar
    from ..loading.config import eval_view
    from ..loading.info import beton_info
    from ..loading.loader import ViewLoader
    from .cache import FeatureCacheWriter, cache_dir_for, find_cache, pipeline_tag

    info = beton_info(beton)
    beton_sha = info.sha256
    if not beton_sha:
        from ..util import file_sha256

        beton_sha = file_sha256(beton)
    pipeline = {"kind": "eval", "crop": "center", "size": cfg.eval_size, "center_ratio": cfg.eval_center_ratio}
    tag = pipeline_tag(pipeline)
    cached = find_cache(cfg.cache_dir, source.sha256, beton_sha, tag)
    if cached is not None:
        return cached
    device = _device(cfg)
    backbone = source.build(cfg.seed).to(device).eval()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    loader = ViewLoader(beton, [eval_view(cfg.eval_size, cfg.eval_center_ratio)], batch_size=cfg.batch_size,
                        num_workers=cfg.num_workers, order="sequential", drop_last=False, device=device,
                        dtype=dtype, with_index=True)
    manifest = info.manifest
    directory = cache_dir_for(cfg.cache_dir, source.sha256, beton_sha, tag)
    writer = FeatureCacheWriter(directory, count=info.num_samples, width=int(backbone.num_features),
                                checkpoint_sha256=source.sha256, beton_sha256=beton_sha, arch=source.arch,
                                pipeline=pipeline, level_names=loader.level_names, num_classes=info.num_classes,
                                class_names=manifest.class_names if manifest is not None else None,
                                label_levels=({k: v.to_dict() for k, v in manifest.label_levels.items()}
                                              if manifest is not None else None),
                                extra={"beton": str(beton), "checkpoint": source.path or "random"})
    with writer, torch.no_grad(), progress_bar("rate") as bar:
        task = bar.add_task(f"features {Path(beton).name}", total=len(loader), rate="")
        t0 = time.perf_counter()
        for i, batch in enumerate(loader):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                feats = backbone(batch.views[0])
            writer.add(feats.float(), batch.label, batch.index, levels=batch.levels)
            bar.update(task, completed=i + 1, rate=f"{writer.rows / (time.perf_counter() - t0):,.0f} img/s")
    return writer.cache


def _positions(cfg: EvalConfig, labels: np.ndarray, budget: Optional[int]) -> np.ndarray:
    from dataset_writers.subsets import budget_positions

    return budget_positions(labels, budget, seed=cfg.budget_seed, balanced=cfg.balanced_budgets, where=cfg.train)


def _budgets(cfg: EvalConfig, n_train: int) -> List[Optional[int]]:
    from dataset_writers.subsets import check_budget, parse_budget

    out = []
    for b in cfg.budgets:
        value = parse_budget(b)
        check_budget(value, n_train, where=cfg.train) if value is not None else None
        out.append(value)
    return out


def _eval_info(cfg: EvalConfig, kind: str, budget: Optional[int], protocol: str) -> EvalInfo:
    from ..loading.info import beton_info

    return EvalInfo(kind=kind, dataset=beton_info(cfg.test).dataset, budget=budget, protocol=protocol,
                    train=str(cfg.train), test=str(cfg.test), label_level=cfg.label_level, seed=cfg.seed)


def result_path(kind: str, cfg: EvalConfig, budget: Optional[int]) -> Path:
    """``out_dir/<kind>-<budget>[-<level>]/results.json``: where evaluation ``kind`` writes one budget's result.

    The one derivation of that path: the evaluations write there and sweep jobs name it as their output.
    """
    level = "" if cfg.label_level == "label" else f"-{cfg.label_level}"
    return Path(cfg.out_dir) / f"{RESULT_KIND.get(kind, kind)}-{_budget_label(budget)}{level}" / "results.json"


def results_paths(kind: str, cfg: EvalConfig) -> List[Path]:
    """Every results.json ``run_eval(kind, cfg)`` writes, one per budget, without reading any beton."""
    from dataset_writers.subsets import parse_budget

    return [result_path(kind, cfg, parse_budget(b)) for b in cfg.budgets]


def _probe_config(cfg: EvalConfig):
    from .linear import LinearProbeConfig

    return LinearProbeConfig(weight_decays=tuple(cfg.linear.weight_decays), heldout_fraction=cfg.linear.heldout_fraction,
                             max_iter=cfg.linear.max_iter, patience=cfg.linear.patience, seed=cfg.seed,
                             device=str(_device(cfg)))


def _linear_results(cfg: EvalConfig, source: BackboneSource, kind: str, train, test, space: LabelSpace,
                    concat: Optional[List[PretrainInfo]] = None, hierarchy=None) -> List[Path]:
    from .linear import PROTOCOL, linear_probe

    y_train, y_test = train.label_array(cfg.label_level), test.label_array(cfg.label_level)
    num_classes = space.classes_at(cfg.label_level, y_train, y_test)   # the dataset's, not the budget's
    written = []
    for budget in _budgets(cfg, train.count):
        pos = _positions(cfg, y_train, budget)
        res = linear_probe(train.features, y_train, test.features, y_test, positions=pos, num_classes=num_classes,
                           config=_probe_config(cfg))
        levels = hierarchy.top1_per_level(res.test_topk[:, 0], y_test) if hierarchy is not None else {}
        extra = {**res.extra(), "n_train": int(len(pos)), "n_test": int(test.count),
                 "label_space": space.describe()}
        if hierarchy is not None:
            extra["hierarchy"] = hierarchy.describe()
        results = Results(pretrain_info(source), _eval_info(cfg, kind, budget, PROTOCOL), res.metrics(),
                          levels=levels, concat=concat or [], extra=extra)
        written.append(write_results(results, result_path(kind, cfg, budget)))
    return written


@register_evaluation("linear")
def eval_linear(cfg: EvalConfig, source: BackboneSource, space: LabelSpace) -> List[Path]:
    """Linear probe on cached features, one result per budget (Fig 2a, Table 1)."""
    return _linear_results(cfg, source, "linear", extract_features(source, cfg.train, cfg),
                           extract_features(source, cfg.test, cfg), space)


@register_evaluation("knn")
def eval_knn(cfg: EvalConfig, source: BackboneSource, space: LabelSpace) -> List[Path]:
    """Cosine kNN (k=20, temperature-weighted votes): the quick monitor."""
    from .knn import PROTOCOL, KnnConfig, knn_probe

    train, test = extract_features(source, cfg.train, cfg), extract_features(source, cfg.test, cfg)
    y_train, y_test = train.label_array(cfg.label_level), test.label_array(cfg.label_level)
    num_classes = space.classes_at(cfg.label_level, y_train, y_test)
    written = []
    for budget in _budgets(cfg, train.count):
        pos = _positions(cfg, y_train, budget)
        res = knn_probe(train.features, y_train, test.features, y_test, positions=pos, num_classes=num_classes,
                        config=KnnConfig(k=cfg.knn.k, temperature=cfg.knn.temperature, device=str(_device(cfg))))
        results = Results(pretrain_info(source), _eval_info(cfg, "knn", budget, PROTOCOL), res.metrics(),
                          extra={"n_train": int(len(pos)), "n_test": int(test.count), "k": cfg.knn.k,
                                 "label_space": space.describe()})
        written.append(write_results(results, result_path("knn", cfg, budget)))
    return written


def hierarchy_from_file(path: Path, train_beton: str):
    """The label hierarchy of a parent-child CSV or the ImageNet devkit's meta.mat, over the beton's classes.

    meta.mat is keyed by WNID; ImageNet's ``class_names`` are words ("tench, Tinca tinca"), so the WNIDs come
    from the manifest's reader options (``wnids``) when the reader recorded them.
    """
    from ..loading.info import beton_info
    from .hierarchy import Hierarchy

    manifest = beton_info(train_beton).manifest
    fine_names = manifest.class_names if manifest is not None else []
    if Path(path).suffix == ".mat":
        wnids = (manifest.reader_options.get("wnids") if manifest is not None else None) or fine_names
        return Hierarchy.from_imagenet_meta(path, wnids=wnids)
    return Hierarchy.from_parent_file(path, fine_names)


@register_evaluation("hierarchical")
def eval_hierarchical(cfg: EvalConfig, source: BackboneSource, space: LabelSpace) -> List[Path]:
    """Train at the finest level, map predictions and targets up the hierarchy, top-1 per level (Fig 5)."""
    from .hierarchy import Hierarchy

    if cfg.hierarchy_file:
        hierarchy = hierarchy_from_file(Path(cfg.hierarchy_file), cfg.train)
    else:
        hierarchy = Hierarchy.from_manifest(cfg.train, cfg.test, levels=cfg.levels or None, fine_level="label")
    return _linear_results(cfg, source, "hierarchical", extract_features(source, cfg.train, cfg),
                           extract_features(source, cfg.test, cfg), space, hierarchy=hierarchy)


@register_evaluation("concat")
def eval_concat(cfg: EvalConfig, source: BackboneSource, space: LabelSpace) -> List[Path]:
    """Features of ``checkpoint`` and every ``concat_with`` side by side, then the linear probe (Table 3)."""
    from .concat import concat_caches

    if not cfg.concat_with:
        raise UserError("kind concat needs concat_with=[OTHER_CHECKPOINT, ...]")
    others = [resolve_backbone(c, seed=cfg.seed) for c in cfg.concat_with]
    train = concat_caches(extract_features(source, cfg.train, cfg),
                          *[extract_features(o, cfg.train, cfg) for o in others])
    test = concat_caches(extract_features(source, cfg.test, cfg),
                         *[extract_features(o, cfg.test, cfg) for o in others])
    return _linear_results(cfg, source, "linear", train, test, space, concat=[pretrain_info(o) for o in others])


def _train_protocol(cfg: EvalConfig, source: Optional[BackboneSource], kind: str, space: LabelSpace) -> List[Path]:
    """Fine-tuning, supervised from scratch and the reference linear protocol, via the training engine."""
    from ..loading.info import beton_info
    from ..train.config import TrainConfig
    from ..train.engine import pretrain

    arch = source.arch if source is not None else cfg.arch
    if not arch:
        raise UserError(f"kind {kind} needs arch=NAME")
    tp = cfg.train_protocol
    written = []
    for budget in _budgets(cfg, beton_info(cfg.train).num_samples):
        out_dir = result_path(kind, cfg, budget).parent / "train"
        tcfg = TrainConfig()
        tcfg.data = cfg.data_config()
        tcfg.data.views = list(cfg.train_views)
        tcfg.data.batch_size = tp.batch_size
        tcfg.data.order = "random"
        tcfg.data.drop_last = True
        tcfg.data.subset = _budget_label(budget) if budget is not None else "all"
        tcfg.data.subset_seed = cfg.budget_seed
        tcfg.data.subset_balanced = cfg.balanced_budgets
        tcfg.model.arch = arch
        tcfg.model.sync_bn = False
        tcfg.objective.name = "supervised"
        tcfg.objective.supervised.label_smoothing = tp.label_smoothing
        tcfg.optim = tp.optim
        tcfg.optim.epochs = tp.epochs
        tcfg.precision = tp.precision
        tcfg.device = cfg.device
        tcfg.seed = cfg.seed
        tcfg.out_dir = str(out_dir)
        tcfg.log_every = 10
        tcfg.tensorboard = False
        tcfg.init_from = source.path if (source is not None and kind != "scratch") else ""
        tcfg.freeze_backbone = kind == "reference_linear"
        tcfg.num_classes = space.num_classes           # the dataset's classes, whatever the budget holds
        if budget is not None and budget < tcfg.data.batch_size:
            tcfg.data.batch_size = max(1, budget)
        summary = pretrain(tcfg)
        val = summary.get("val") or {}
        protocol = {"finetune": "fine-tuned end to end from the checkpoint (supervised, RRC+flip)",
                    "scratch": "supervised from scratch on the budget (RRC+flip)",
                    "reference_linear": "frozen backbone, augmented inputs, SGD linear head "
                                        f"({tp.epochs} epochs): SimCLR's reference protocol"}[kind]
        o = tp.optim     # the recipe, so that the report can say which one produced the number
        protocol += (f"; recipe: {o.name}{' nesterov' if o.nesterov else ''} lr {o.lr:g}"
                     f"{' x batch/256' if o.lr_scaling == 'linear' else ''}, wd {o.weight_decay:g}, "
                     f"{o.warmup_epochs:g} warm-up + {tp.epochs} epochs, batch {tp.batch_size}")
        pre = pretrain_info(source) if source is not None and kind != "scratch" else PretrainInfo(method="none",
                                                                                                  arch=arch)
        results = Results(pre, _eval_info(cfg, kind, budget, protocol),
                          {"top1": float(val.get("top1", 0.0)), "top5": float(val.get("top5", 0.0))},
                          extra={"n_train": int(summary.get("num_train", 0)), "train_run": str(out_dir),
                                 "seconds": summary.get("seconds"), "label_space": space.describe()})
        written.append(write_results(results, result_path(kind, cfg, budget)))
    return written


@register_evaluation("finetune")
def eval_finetune(cfg: EvalConfig, source: BackboneSource, space: LabelSpace) -> List[Path]:
    return _train_protocol(cfg, source, "finetune", space)


@register_evaluation("scratch")
def eval_scratch(cfg: EvalConfig, source: Optional[BackboneSource], space: LabelSpace) -> List[Path]:
    return _train_protocol(cfg, None, "scratch", space)


@register_evaluation("reference_linear")
def eval_reference_linear(cfg: EvalConfig, source: BackboneSource, space: LabelSpace) -> List[Path]:
    return _train_protocol(cfg, source, "reference_linear", space)


def run_eval(kind: str, cfg: EvalConfig) -> List[Path]:
    """Validate everything that can be checked cheaply, then run evaluation ``kind``."""
    from ..loading.info import beton_info

    EVALUATIONS.check(kind)
    train, test = beton_info(cfg.train), beton_info(cfg.test)       # missing betons: one line, before any work
    space = check_label_space(train, test, cfg.cross_dataset)         # another dataset's labels: one line
    for name, info in (("train", train), ("test", test)):
        if cfg.label_level != "label" and cfg.label_level not in info.level_names:
            raise UserError(f"{name} beton {info.path} has no label level '{cfg.label_level}' "
                            f"(levels: {', '.join(info.level_names) or 'none'})")
    _budgets(cfg, train.num_samples)                                    # a budget over the split: one line
    if kind != "scratch" and not cfg.checkpoint:
        raise UserError(f"kind {kind} needs checkpoint=RUN_DIR, checkpoint=PATH/backbone.pth or checkpoint=random")
    source = None if kind == "scratch" else resolve_backbone(cfg.checkpoint, cfg.arch, cfg.seed)
    return EVALUATIONS.lookup(kind)(cfg, source, space)
