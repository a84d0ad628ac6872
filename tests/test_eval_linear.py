"""Linear probe on cached features: accuracy, chance, the optimum (scikit-learn), wd selection without test data,
label budgets, concatenated features, and results.json."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from ffcv_ssl.evaluation._rows import Rows
from dataset_writers.subsets import (
    BUDGETS, BudgetError, budget_name, budget_positions, budgets_that_fit, parse_budget,
)
from ffcv_ssl.evaluation.cache import FeatureCacheWriter, cache_dir_for
from ffcv_ssl.evaluation.concat import concat_caches
from ffcv_ssl.evaluation.linear import (
    PROTOCOL, LinearProbeConfig, ProbeError, fit_logistic, linear_probe, select_weight_decay,
)
from ffcv_ssl.results import EvalInfo, PretrainInfo, Results, read_results, write_results

FAST = dict(device="cpu", weight_decays=(1e-2, 1e-3, 1e-4), max_iter=100)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def clusters(n: int, num_classes: int, width: int, seed: int, spread: float = 3.0, centres=None):
    """Gaussian clusters, one per class: linearly separable when ``spread`` is large against unit noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, width)) * spread if centres is None else centres
    y = np.arange(n) % num_classes
    x = centres[y] + rng.normal(size=(n, width)) + 1.0   # off-centre, as post-ReLU features are
    return x.astype(np.float16), y.astype(np.int64), centres


def cached(root, x, y, name):
    """Write features to a real FeatureCache and return its memory-mapped arrays."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    with FeatureCacheWriter(cache_dir_for(root, digest, "0" * 64, "eval"), count=len(x), width=x.shape[1],
                            checkpoint_sha256=digest, beton_sha256="0" * 64, arch="resnet50", pipeline={}) as w:
        for s in range(0, len(x), 256):
            w.add(x[s:s + 256], y[s:s + 256], np.arange(s, min(s + 256, len(x))))
    return w.cache


class RecordingRows:
    """An ndarray wrapper that remembers which rows were read (to audit the probe's data access)."""

    def __init__(self, x):
        self.x, self.shape, self.read = x, x.shape, set()

    def __getitem__(self, rows):
        idx = np.arange(self.shape[0])[rows]
        self.read.update(np.atleast_1d(idx).tolist())
        return self.x[rows]


@pytest.fixture(scope="module")
def separable(tmp_path_factory):
    root = tmp_path_factory.mktemp("lin")
    x, y, centres = clusters(1200, 10, 32, seed=0)
    xt, yt, _ = clusters(500, 10, 32, seed=1, centres=centres)
    return cached(root, x, y, "train"), cached(root, xt, yt, "test")


def test_separable_features_reach_99_percent(separable):
    train, test = separable
    result = linear_probe(train.features, train.labels, test.features, test.labels, num_classes=10,
                          config=LinearProbeConfig(device="cpu"))
    assert result.top1 >= 0.99 and result.topk >= result.top1 and result.k == 5
    assert result.test_topk.shape == (500, 5)
    assert result.weight_decay in LinearProbeConfig().weight_decays
    # the classifier on raw features gives the same predictions as the standardized one
    w, b = result.model.raw()
    raw = (np.asarray(test.features, np.float32) @ w + b).argmax(1)
    np.testing.assert_array_equal(raw, result.test_topk[:, 0])


def test_shuffled_labels_give_chance(tmp_path):
    num_classes = 40
    x, y, centres = clusters(1600, num_classes, 32, seed=2)
    xt, yt, _ = clusters(800, num_classes, 32, seed=3, centres=centres)
    truth = linear_probe(x, y, xt, yt, config=LinearProbeConfig(**FAST))
    assert truth.top1 >= 0.99                                      # the same features are separable ...
    shuffled = np.random.default_rng(0).permutation(y)
    result = linear_probe(x, shuffled, xt, yt, config=LinearProbeConfig(**FAST))
    assert result.top1 <= 0.1                                      # ... but the labels carry nothing: chance is 0.025
    assert max(result.selection.heldout_top1) <= 0.1


def test_solver_reaches_the_optimum_of_scikit_learn(tmp_path):
    """Same objective (mean cross-entropy + wd/2 |W|^2 <=> scikit-learn's C = 1 / (wd N)), same minimum."""
    x, y, _ = clusters(600, 5, 16, seed=4, spread=0.5)               # overlapping classes: a strictly convex fit
    wd = 1e-2
    rows = Rows(x, None, torch.device("cpu"), chunk_rows=97)         # several chunks per pass
    model = fit_logistic(rows, torch.as_tensor(y), 5, wd, LinearProbeConfig(device="cpu", tolerance_grad=1e-7))
    xs = (x.astype(np.float64) - model.mean.numpy()) / model.std.numpy()
    ref = LogisticRegression(C=1 / (wd * len(y)), tol=1e-10, max_iter=10_000).fit(xs, y)

    def objective(weight, bias):
        z = xs @ weight + bias
        z -= z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return -logp[np.arange(len(y)), y].mean() + 0.5 * wd * (weight ** 2).sum()

    ours = objective(model.weight.numpy().astype(np.float64), model.bias.numpy())
    theirs = objective(ref.coef_.T, ref.intercept_)
    assert ours == pytest.approx(theirs, abs=1e-5)
    assert model.loss == pytest.approx(ours, abs=1e-5)              # the reported objective is the final one
    assert ((xs @ model.weight.numpy() + model.bias.numpy()).argmax(1) == ref.predict(xs)).mean() >= 0.99


def test_weight_decay_is_chosen_without_test_data(separable):
    train, test = separable
    budget = budget_positions(train.labels, 600, seed=0)
    recorded = RecordingRows(train.features)
    result = linear_probe(recorded, train.labels, test.features, test.labels, positions=budget, num_classes=10,
                          config=LinearProbeConfig(**FAST, heldout_fraction=0.2, seed=3))
    sel = result.selection
    fit, held = set(sel.fit_positions.tolist()), set(sel.heldout_positions.tolist())
    assert fit.isdisjoint(held) and fit | held == set(budget.tolist())
    assert len(held) == 120                                          # 20% of the budget
    assert recorded.read <= set(budget.tolist())                     # no training row outside the budget was read
    np.testing.assert_array_equal(result.train_positions, budget)
    # the selection is a function of the training budget only: any evaluation set gives the same choice
    noise = np.random.default_rng(9).normal(size=test.features.shape).astype(np.float16)
    other = linear_probe(train.features, train.labels, noise, np.zeros(len(noise), np.int64), positions=budget,
                         num_classes=10, config=LinearProbeConfig(**FAST, heldout_fraction=0.2, seed=3))
    assert other.selection.heldout_top1 == sel.heldout_top1 and other.weight_decay == result.weight_decay
    direct = select_weight_decay(train.features, train.labels, budget, 10, LinearProbeConfig(**FAST, seed=3))
    np.testing.assert_array_equal(direct.heldout_positions, sel.heldout_positions)
    assert direct.chosen == result.weight_decay


def test_resident_rows_equal_streamed_rows(separable):
    """The GPU layout (rows uploaded once as fp16, converted per chunk) serves exactly what streaming serves."""
    train, _ = separable
    positions = np.sort(np.random.default_rng(0).choice(train.count, 333, replace=False))
    streamed = Rows(train.features, positions, torch.device("cpu"), chunk_rows=50)
    resident = Rows(train.features, positions, torch.device("cpu"), chunk_rows=50, resident=True)
    assert resident.resident is not None and streamed.resident is None
    for (a0, a1, a), (b0, b1, b) in zip(streamed.chunks(), resident.chunks()):
        assert (a0, a1) == (b0, b1)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(torch.cat([c for _, _, c in streamed.chunks()]).numpy(),
                                  np.asarray(train.features[positions], np.float32))
    mean, std = streamed.moments()
    ref = np.asarray(train.features[positions], np.float64)
    np.testing.assert_allclose(mean.numpy(), ref.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), ref.std(0), rtol=1e-5)


def test_chunk_size_does_not_change_the_probe(separable):
    train, test = separable
    a = linear_probe(train.features, train.labels, test.features, test.labels,
                     config=LinearProbeConfig(**FAST, chunk_rows=100_000))
    b = linear_probe(train.features, train.labels, test.features, test.labels,
                     config=LinearProbeConfig(**FAST, chunk_rows=77))
    assert a.weight_decay == b.weight_decay
    assert (a.test_topk[:, 0] == b.test_topk[:, 0]).mean() >= 0.998


def test_budgets_are_nested_and_checked_before_any_work():
    labels = np.arange(5000) % 7
    small, large = budget_positions(labels, "1k", seed=1), budget_positions(labels, 2500, seed=1)
    assert len(small) == 1000 and len(large) == 2500 and set(small) <= set(large)
    assert np.all(np.diff(large) > 0)
    balanced = budget_positions(labels, 700, seed=1, balanced=True)
    assert np.bincount(labels[balanced]).tolist() == [100] * 7
    np.testing.assert_array_equal(budget_positions(labels, "all"), np.arange(5000))
    assert [parse_budget(v) for v in ("10k", "1M", "125_000", "all", 50)] == [10_000, 1_000_000, 125_000, None, 50]
    assert [budget_name(b) for b in BUDGETS] == ["10k", "50k", "125k", "250k", "500k", "1M", "all"]
    assert budgets_that_fit(200_000) == [10_000, 50_000, 125_000, None]
    with pytest.raises(BudgetError) as exc:
        budget_positions(labels, "10k", where="digits_train.beton")
    assert one_line(exc) == ("label budget 10k (10000 labels) is larger than digits_train.beton (5000 samples); "
                             "choose a budget <= 5000 or 'all'")
    with pytest.raises(BudgetError) as exc:
        parse_budget("lots")
    assert "'lots'" in one_line(exc)


def test_bad_probe_inputs_are_one_line_errors(separable):
    train, test = separable
    cfg = LinearProbeConfig(**FAST)
    with pytest.raises(ProbeError) as exc:
        linear_probe(train.features, train.labels, test.features, test.labels, num_classes=5, config=cfg)
    assert "num_classes=5" in one_line(exc)
    with pytest.raises(ProbeError) as exc:
        linear_probe(train.features, train.labels, test.features[:, :16], test.labels, config=cfg)
    assert "32-d but evaluation features are 16-d" in one_line(exc)
    with pytest.raises(ProbeError) as exc:
        linear_probe(train.features, train.labels, test.features, test.labels, config=LinearProbeConfig(
            heldout_fraction=1.5))
    assert "heldout_fraction" in one_line(exc)


def test_concatenated_features_combine_information(tmp_path):
    """Each cache knows one bit of a 2-bit label; only their concatenation knows both (Table 3's idea)."""
    rng = np.random.default_rng(5)
    n, nt = 800, 400
    y, yt = np.arange(n) % 4, np.arange(nt) % 4

    def bit_features(labels, bit):
        signal = ((labels >> bit) & 1)[:, None] * 4.0
        return (signal + rng.normal(size=(len(labels), 8))).astype(np.float16)

    parts = {}
    for bit in (0, 1):
        parts[bit] = (cached(tmp_path, bit_features(y, bit), y, f"train{bit}"),
                      cached(tmp_path, bit_features(yt, bit), yt, f"test{bit}"))
    alone = [linear_probe(tr.features, tr.labels, te.features, te.labels, config=LinearProbeConfig(**FAST)).top1
             for tr, te in parts.values()]
    train = concat_caches(parts[0][0], parts[1][0])
    test = concat_caches(parts[0][1], parts[1][1])
    assert train.width == 16
    both = linear_probe(train.features, train.labels, test.features, test.labels, config=LinearProbeConfig(**FAST))
    assert max(alone) <= 0.6 and both.top1 >= 0.95


def test_results_json_from_a_probe_validates(separable, tmp_path):
    train, test = separable
    result = linear_probe(train.features, train.labels, test.features, test.labels, positions=np.arange(600),
                          config=LinearProbeConfig(**FAST))
    res = Results(pretrain=PretrainInfo(method="simclr", dataset="inat21", size=500_000, seed=0,
                                        checkpoint_sha256=train.manifest["checkpoint_sha256"]),
                  eval=EvalInfo(kind="linear", dataset="inat21", budget=600, protocol=PROTOCOL),
                  metrics=result.metrics(), extra=result.extra())
    back = read_results(write_results(res, tmp_path / "results.json"))
    assert back.metrics == pytest.approx({"top1": result.top1, "top5": result.topk})
    assert back.extra["weight_decay"] == result.weight_decay and back.extra["train_samples"] == 600
