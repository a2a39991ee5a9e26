"""Clustering metrics against closed-form answers and hand-worked examples."""

import json
import math

import numpy as np
import pytest
import torch

from components.evaluation.clustering import (
    ari,
    best_matching,
    clustering_accuracy,
    clustering_metrics,
    contingency,
    nmi,
)

# Hand-worked case: three classes of three; cluster 0 holds one 0 and three 1s, cluster 1 two 0s,
# cluster 2 the three 2s. Contingency (cluster x class) = [[1, 3, 0], [2, 0, 0], [0, 0, 3]].
Y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
PRED = np.array([1, 1, 0, 0, 0, 0, 2, 2, 2])


def test_a_permuted_labelling_is_a_perfect_clustering():
    y = np.repeat(np.arange(5), 7)
    perm = np.array([3, 0, 4, 1, 2])
    pred = perm[y]
    assert clustering_accuracy(pred, y) == 1.0
    assert nmi(pred, y) == pytest.approx(1.0)
    assert ari(pred, y) == pytest.approx(1.0)
    assert best_matching(pred, y) == {int(perm[c]): c for c in range(5)}


def test_hand_worked_confusion():
    np.testing.assert_array_equal(contingency(PRED, Y), [[1, 3, 0], [2, 0, 0], [0, 0, 3]])
    # best one-to-one matching: 0 -> 1 (3 agree), 1 -> 0 (2), 2 -> 2 (3): 8 of 9
    assert best_matching(PRED, Y) == {0: 1, 1: 0, 2: 2}
    assert clustering_accuracy(PRED, Y) == pytest.approx(8 / 9)
    # ARI: sum C(n_ij, 2) = 3 + 1 + 3 = 7; rows sum C(a_i, 2) = 6 + 1 + 3 = 10; columns 3 * 3 = 9;
    # expected 10 * 9 / C(9, 2) = 2.5; maximum (10 + 9) / 2 = 9.5; ARI = (7 - 2.5) / (9.5 - 2.5)
    assert ari(PRED, Y) == pytest.approx(4.5 / 7)
    # NMI = I / mean(H(pred), H(y)) with p(cluster) = 4/9, 2/9, 3/9 and p(class) = 1/3 each
    mutual = (1 / 9) * math.log(3 / 4) + (1 / 3) * math.log(9 / 4) + (5 / 9) * math.log(3)
    h_pred = -sum(p * math.log(p) for p in (4 / 9, 2 / 9, 3 / 9))
    assert nmi(PRED, Y) == pytest.approx(mutual / ((h_pred + math.log(3)) / 2))


def test_accuracy_is_invariant_to_renaming_clusters():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    pred = np.where(rng.random(200) < 0.7, y, rng.integers(0, 4, 200))
    renamed = rng.permutation(4)[pred]
    assert clustering_accuracy(renamed, y) == clustering_accuracy(pred, y)
    assert nmi(renamed, y) == pytest.approx(nmi(pred, y))
    assert ari(renamed, y) == pytest.approx(ari(pred, y))


def test_more_or_fewer_clusters_than_classes():
    # four singleton clusters over two classes: only two clusters can be matched
    assert clustering_accuracy([0, 1, 2, 3], [0, 0, 1, 1]) == pytest.approx(0.5)
    assert len(best_matching([0, 1, 2, 3], [0, 0, 1, 1])) == 2
    # one cluster: the largest class is all it can match
    assert clustering_accuracy([0, 0, 0, 0, 0], [2, 2, 2, 0, 1]) == pytest.approx(0.6)
    assert ari([0, 0, 0, 0, 0], [2, 2, 2, 0, 1]) == pytest.approx(0.0)


def test_clustering_metrics_from_logits_is_json_serialisable():
    logits = torch.nn.functional.one_hot(torch.as_tensor(PRED), 4).float() * 3.0 - 1.0
    metrics = clustering_metrics(logits, Y)
    assert metrics == json.loads(json.dumps(metrics))
    assert metrics["clustering_accuracy"] == pytest.approx(8 / 9)
    assert metrics["ari"] == pytest.approx(4.5 / 7)
    assert metrics["num_clusters"] == 3 and metrics["num_samples"] == 9
    assert metrics["mapping"] == {"0": 1, "1": 0, "2": 2}
    assert clustering_metrics(PRED, Y) == metrics


def test_bad_inputs_raise_and_empty_is_nan():
    with pytest.raises(ValueError, match="rows"):
        clustering_accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        clustering_accuracy([0, -1], [0, 1])
    with pytest.raises(ValueError, match="integers"):
        clustering_metrics(np.array([0.5, 1.0]), [0, 1])
    assert math.isnan(clustering_accuracy([], []))
