"""Weighted cosine kNN (InstDisc / DINO) equals a brute-force numpy implementation, whatever the chunking."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ffcv_ssl.evaluation._rows import Rows
from ffcv_ssl.evaluation.knn import KnnConfig, knn_probe, nearest, rank_classes, vote
from ffcv_ssl.evaluation.linear import ProbeError


def brute_force(train_x, train_y, test_x, num_classes, k=20, temperature=0.07):
    """Everything at once in float64: all similarities, a full sort, one-hot votes (DINO's formulation)."""
    a = train_x.astype(np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    q = test_x.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    sims = q @ a.T
    neighbours = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    weights = np.exp(np.take_along_axis(sims, neighbours, axis=1) / temperature)
    one_hot = np.eye(num_classes)[train_y[neighbours]]              # (q, k, classes)
    votes = (one_hot * weights[:, :, None]).sum(axis=1)
    ranked = np.argsort(-votes, axis=1, kind="stable")               # ties: smaller class first
    return neighbours, votes, ranked


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    num_classes, width = 7, 24
    centres = rng.normal(size=(num_classes, width))
    y = rng.integers(0, num_classes, 300)
    yt = rng.integers(0, num_classes, 90)
    x = (centres[y] + rng.normal(size=(300, width)) * 1.5).astype(np.float16)
    xt = (centres[yt] + rng.normal(size=(90, width)) * 1.5).astype(np.float16)
    return x, y, xt, yt, num_classes


@pytest.mark.parametrize("chunk_rows, query_chunk", [(13, 7), (1000, 1000)])
def test_knn_equals_brute_force(data, chunk_rows, query_chunk):
    x, y, xt, yt, num_classes = data
    neighbours, votes, ranked = brute_force(x, y, xt, num_classes)
    # the chunked neighbour search and the votes, piece by piece
    rows = Rows(x, None, torch.device("cpu"), chunk_rows)
    sims, found = nearest(rows, F.normalize(torch.from_numpy(xt.astype(np.float32)), dim=1), 20)
    np.testing.assert_array_equal(found.numpy(), neighbours)
    ours = vote(sims, torch.from_numpy(y)[found], num_classes, 0.07)
    np.testing.assert_allclose(ours.numpy(), votes, rtol=1e-4)
    np.testing.assert_array_equal(rank_classes(ours, 5).numpy(), ranked[:, :5])
    # and end to end
    result = knn_probe(x, y, xt, yt, num_classes=num_classes,
                       config=KnnConfig(device="cpu", chunk_rows=chunk_rows, query_chunk=query_chunk))
    np.testing.assert_array_equal(result.predictions, ranked[:, :5])
    assert result.top1 == pytest.approx((ranked[:, 0] == yt).mean())
    assert result.topk == pytest.approx((ranked[:, :5] == yt[:, None]).any(1).mean())
    assert 0.5 < result.top1 < 1.0          # a real classifier on overlapping clusters, not a degenerate one


def test_knn_on_a_budget_uses_only_those_rows(data):
    x, y, xt, yt, num_classes = data
    positions = np.sort(np.random.default_rng(1).choice(len(x), 15, replace=False))   # fewer rows than k
    _, _, ranked = brute_force(x[positions], y[positions], xt, num_classes)
    result = knn_probe(x, y, xt, yt, positions=positions, num_classes=num_classes,
                       config=KnnConfig(device="cpu", chunk_rows=4))
    np.testing.assert_array_equal(result.predictions, ranked[:, :5])
    assert result.metrics().keys() == {"top1", "top5"}


def test_bad_knn_inputs_are_one_line_errors(data):
    x, y, xt, yt, _ = data
    with pytest.raises(ProbeError) as exc:
        knn_probe(x, y, xt[:, :10], yt, config=KnnConfig(device="cpu"))
    assert "\n" not in str(exc.value) and "24-d" in str(exc.value)
    with pytest.raises(ProbeError) as exc:
        knn_probe(x, y, xt, yt, config=KnnConfig(device="cpu", temperature=0))
    assert "temperature" in str(exc.value)
