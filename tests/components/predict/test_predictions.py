"""``sennflow predict``'s table and summary: probabilities in closed form, classes in order,
labelled rows scored, a prototype model's prototypes as the explain stage lists them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from components.data.new_inputs import NO_LABEL, InputBatch
from components.explain.prototypes import explain_samples
from components.models import create_model
from components.predict.predictions import (
    PredictConfig,
    predict_inputs,
    prediction_summary,
    prediction_table,
)

NAMES = ("ant", "bee", "cow")


def _linear() -> nn.Module:
    """logits = x @ W: row i of the identity gives logits W[i]."""
    model = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.0, 3.0], [0.0, 1.0, 0.0]]))
    return model


def _batches(x: np.ndarray, labels: np.ndarray, size: int):
    for start in range(0, len(x), size):
        end = start + size
        ids = [f"row {i}" for i in range(start, min(end, len(x)))]
        yield InputBatch(ids, x[start:end], labels[start:end])


def test_the_table_lists_the_top_classes_with_softmax_probabilities():
    x = np.eye(3, dtype=np.float32)
    labels = np.array([0, 2, NO_LABEL])
    predictions = predict_inputs(_linear(), _batches(x, labels, size=2), keep_inputs=2)
    table = prediction_table(predictions, NAMES, top_k=2).to_pydict()
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 3.0, 0.0]])  # x @ W.T
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert table["input"] == ["row 0", "row 1", "row 2"]
    assert table["predicted"] == ["ant", "cow", "bee"]
    np.testing.assert_allclose(table["probability"], probs.max(axis=1), rtol=1e-6)
    assert table["class_2"][0] == "bee"  # the runner-up
    np.testing.assert_allclose(table["probability_2"][0], probs[0, 1], rtol=1e-6)
    assert table["true"] == ["ant", "cow", None] and table["correct"] == [True, True, None]
    assert "class_3" not in table and "prototype_1" not in table
    assert predictions.inputs.shape == (2, 3)  # only the first rows are kept


def test_the_summary_counts_classes_and_scores_only_labelled_rows():
    x = np.eye(3, dtype=np.float32)[[0, 0, 1, 2]]
    labels = np.array([0, 1, 2, NO_LABEL])  # one right, one wrong, one right, one unknown
    model = _linear()
    summary = prediction_summary(predict_inputs(model, _batches(x, labels, 3)), NAMES, model)
    assert summary["rows"] == 4 and summary["labelled"] == 3
    assert summary["counts"] == [2, 1, 1]  # ant twice, bee once, cow once
    assert summary["metrics"]["accuracy"] == pytest.approx(2 / 3)
    assert summary["metrics"]["num_samples"] == 3
    first = summary["least_confident"][0]  # x = e1: "cow" at e/(2+e)
    assert first["input"] == "row 2" and first["probability"] == pytest.approx(np.e / (2 + np.e))
    tops = [r["probability"] for r in summary["least_confident"]]
    assert tops == sorted(tops)


def test_a_prototype_model_lists_the_prototypes_the_explain_stage_lists():
    torch.manual_seed(0)
    model = create_model("proto_ae", input_shape=(6,), num_classes=3, tiny=True).eval()
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    predictions = predict_inputs(model, _batches(x, np.full(5, NO_LABEL), 2))
    table = prediction_table(predictions, NAMES).to_pydict()
    explained = explain_samples(model, x, np.zeros(5, dtype=np.int64), top_k=3)
    for row, sample in enumerate(explained):
        first = sample["prototypes"][0]
        assert table["prototype_1"][row].startswith(f"P{first['index']} (")
        assert table["prototype_1_contribution"][row] == pytest.approx(first["contribution"])
        assert table["prototype_1_similarity"][row] == pytest.approx(first["similarity"])
    assert "true" not in table  # no row names its class


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="predict.top_k must be >= 1"):
        PredictConfig(top_k=0)
    with pytest.raises(ValueError, match="predict.batch_size must be >= 1"):
        PredictConfig(batch_size=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a CUDA GPU")
def test_a_gpu_asked_for_where_there_is_none_is_refused():
    assert PredictConfig().torch_device() == "cpu"  # auto
    with pytest.raises(ValueError, match="predict.device=cuda, but this machine has no CUDA"):
        PredictConfig(device="cuda").torch_device()
    with pytest.raises(ValueError, match="predict.device must be auto, cpu or cuda"):
        PredictConfig(device="tpu")
