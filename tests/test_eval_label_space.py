"""Label spaces in evaluation: train and test must mean the same classes, and every
classifier is as wide as the dataset's class count, whatever a label budget happens to contain."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fixtures.datasets import build_imagenet  # noqa: E402

from dataset_writers.write import ImageOptions, write_dataset, write_split  # noqa: E402
from ffcv_ssl.config import load_config  # noqa: E402
from dataset_writers.subsets import budget_positions  # noqa: E402
from ffcv_ssl.evaluation.cache import FeatureCache  # noqa: E402
from ffcv_ssl.evaluation.config import EvalConfig  # noqa: E402
from ffcv_ssl.evaluation.linear import LinearProbeConfig, linear_probe  # noqa: E402
from ffcv_ssl.evaluation.runner import run_eval  # noqa: E402
from ffcv_ssl.loading.info import beton_info, beton_labels  # noqa: E402

OPTS = ImageOptions(max_resolution=32, page_size=1 << 21)


@pytest.fixture(scope="module")
def betons(tmp_path_factory):
    """Digits train (1438) and test (359), 10 classes; an ImageNet-layout train split reduced to 3 classes."""
    from dataset_writers.registry import get_reader

    base = tmp_path_factory.mktemp("label_space")
    spec = get_reader("digits")
    out = {}
    for split in ("train", "test"):
        out[split] = base / f"digits_{split}.beton"
        write_split(spec.read(None, split, spec.options()), out[split], image=OPTS, workers=0)
    fx = build_imagenet(base / "imagenet", "folders", per_class=2)
    for wnid in fx.wnids[3:]:
        shutil.rmtree(base / "imagenet" / "train" / wnid)
    out["imagenet3"] = base / "imagenet3_train.beton"
    write_dataset("imagenet", fx.root, "train", out["imagenet3"], image=OPTS, workers=0)
    return out


def eval_cfg(betons, tmp_path, *overrides):
    return load_config(EvalConfig, None, [
        "checkpoint=random", "arch=ssl_resnet10_tiny", f"train={betons['train']}", f"test={betons['test']}",
        "eval_size=32", "batch_size=128", "num_workers=2", "device=cpu", f"out_dir={tmp_path / 'eval'}",
        f"cache_dir={tmp_path / 'features'}", *overrides])


def test_a_budget_without_the_highest_classes_probes_every_test_sample(betons, tmp_path):
    """With class 9 (and others) absent from the budget, the probe used to infer 9 classes from the
    budget and refuse the test labels; the classifier must have the manifest's 10 classes."""
    labels = beton_labels(betons["train"])
    budget, seed = 12, None
    for s in range(500):
        present = set(labels[budget_positions(labels, budget, seed=s)].tolist())
        if 9 not in present and len(present) <= 7:
            seed = s
            break
    assert seed is not None
    written = run_eval("linear", eval_cfg(betons, tmp_path, f"budgets=[{budget}]", f"budget_seed={seed}"))
    result = json.loads(Path(written[0]).read_text())
    n_test = beton_info(betons["test"]).num_samples
    assert result["extra"]["n_test"] == n_test == 359
    assert result["extra"]["num_classes"] == 10 and result["extra"]["train_samples"] == budget
    # the reference: the same probe on the same cached features, told the dataset's 10 classes
    caches = {FeatureCache.open(d).manifest["beton"]: FeatureCache.open(d) for d in (tmp_path / "features").iterdir()
              if not d.name.startswith(".")}
    train, test = caches[str(betons["train"])], caches[str(betons["test"])]
    ref = linear_probe(train.features, train.labels, test.features, test.labels, num_classes=10,
                       positions=budget_positions(labels, budget, seed=seed), config=LinearProbeConfig(device="cpu"))
    assert ref.test_topk.shape[0] == n_test
    assert result["metrics"]["top1"] == pytest.approx(ref.top1)
    assert result["metrics"]["top1"] * n_test == pytest.approx(round(result["metrics"]["top1"] * n_test))


def test_train_and_test_of_other_datasets_exit_2_before_any_work(betons, tmp_path):
    """10-class digits against a 3-class ImageNet split used to exit 0 with top-1 = 0.0; now exit 2, up front."""
    env = {**os.environ, "COLUMNS": "400"}
    res = subprocess.run([sys.executable, "-m", "ffcv_ssl", "eval", "linear", "checkpoint=random",
                          "arch=ssl_resnet10_tiny", f"train={betons['train']}", f"test={betons['imagenet3']}",
                          "eval_size=32", f"out_dir={tmp_path / 'eval'}", f"cache_dir={tmp_path / 'features'}"],
                         capture_output=True, text=True, env=env, timeout=600)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert len(lines) == 1, lines
    assert "digits (10 classes)" in lines[0] and "imagenet (3 classes)" in lines[0], lines[0]
    assert str(betons["train"]) in lines[0] and "cross_dataset=true" in lines[0]
    assert not (tmp_path / "features").exists() and not (tmp_path / "eval").exists()


def test_cross_dataset_on_purpose_covers_both_label_spaces(betons, capsys):
    from ffcv_ssl.evaluation.label_space import LabelSpaceError, check_label_space

    space = check_label_space(beton_info(betons["train"]), beton_info(betons["imagenet3"]), cross_dataset=True)
    assert space.num_classes == 10 and space.cross_dataset
    assert "cross-dataset evaluation" in capsys.readouterr().err
    with pytest.raises(LabelSpaceError, match="class counts differ|datasets differ"):
        check_label_space(beton_info(betons["imagenet3"]), beton_info(betons["train"]))
    same = check_label_space(beton_info(betons["train"]), beton_info(betons["test"]))
    assert same.num_classes == 10 and same.checked and same.classes_at("half", np.array([0, 1])) == 2


def test_a_missing_manifest_is_an_explicit_warning(betons, tmp_path, capsys):
    from ffcv_ssl.evaluation.label_space import check_label_space

    bare = tmp_path / "bare_test.beton"
    shutil.copyfile(betons["test"], bare)
    space = check_label_space(beton_info(betons["train"]), beton_info(bare))
    err = capsys.readouterr().err
    assert "warning:" in err and str(bare) in err and "bare_test.manifest.json" in err
    assert not space.checked and space.num_classes == 10
