"""Evaluating on image datasets: the test split streamed (same metrics as in memory), the
analyses that need the inputs on a bounded sample, Prob-PSENN's reference on a balanced one."""

import numpy as np
import pytest
import torch
from prefect.logging import disable_run_logger

import components.data.decoded_memory as decoded_memory
from components.data import reader
from components.data.decoded_memory import reference_rows
from components.data.reader import (
    iter_batches,
    load_meta,
    read_encoded,
    read_labels,
    read_rows,
    read_split,
)
from components.evaluation.analyses import evaluate_model, evaluate_stream, uncertainty_summary
from components.evaluation.predict import predict_logits
from components.training.checkpoint import ModelSpec, save_checkpoint
from components.training.trained import load_trained
from tasks.evaluate import evaluate_task

SHAPE = (3, 32, 32)
ROW_BYTES = 4 * 3 * 32 * 32


def built(name: str):
    spec = ModelSpec(name, SHAPE, 4, tiny=True)
    torch.manual_seed(0)
    return spec.build().eval(), spec


def test_streamed_metrics_equal_the_in_memory_ones(parts_image_dataset):
    model, _ = built("cbc")  # has a certified radius: an analysis that needs the inputs
    x, y = read_split(parts_image_dataset, "test")
    in_memory = evaluate_model(model, x, y, num_classes=4, batch_size=64)
    sample = read_split(parts_image_dataset, "test", limit=100)
    batches = iter_batches(parts_image_dataset, "test", 64)  # 300 rows over two Parquet parts
    streamed = evaluate_stream(model, batches, num_classes=4, sample=sample)

    robustness = streamed.pop("robustness")
    assert streamed.pop("analysis_rows") == 100
    assert streamed == {k: v for k, v in in_memory.items() if k != "robustness"}
    assert robustness["correct"] == in_memory["robustness"]["correct"][:100]
    np.testing.assert_allclose(robustness["radius"], in_memory["robustness"]["radius"][:100])


def test_a_sample_that_is_not_the_streams_first_rows_is_refused(parts_image_dataset):
    model, _ = built("cbc")
    x, y = read_split(parts_image_dataset, "test", limit=20)
    with pytest.raises(ValueError, match="first rows of the stream"):
        evaluate_stream(
            model,
            iter_batches(parts_image_dataset, "test", 64),
            num_classes=4,
            sample=(x[::-1], y[::-1]),
        )


def test_the_task_streams_the_test_split_and_bounds_the_analyses(
    parts_image_dataset, tmp_path, monkeypatch
):
    model, spec = built("prob_psenn")  # uncertainty, and a reference fitted on training inputs
    checkpoint = save_checkpoint(tmp_path / "best", model, spec, {})
    monkeypatch.setattr(decoded_memory, "SAMPLE_BYTES", 64 * ROW_BYTES)
    whole_splits = []
    real_read_split = reader.read_split

    def spy(path, split, **kwargs):
        if kwargs.get("limit") is None:
            whole_splits.append(split)
        return real_read_split(path, split, **kwargs)

    monkeypatch.setattr(reader, "read_split", spy)
    with disable_run_logger():
        metrics = evaluate_task.fn(checkpoint, parts_image_dataset)
    assert whole_splits == []  # no split was decoded whole, the training split neither

    fitted, _ = load_trained(checkpoint, parts_image_dataset)
    x, y = real_read_split(parts_image_dataset, "test")
    in_memory = evaluate_model(fitted, x, y, num_classes=4)
    headline = ("accuracy", "macro_f1", "nll", "ece", "confusion_matrix", "reliability")
    assert {k: metrics[k] for k in headline} == {k: in_memory[k] for k in headline}
    assert metrics["analysis_rows"] == 64 and len(metrics["uncertainty"]["total"]) == 64
    expected = uncertainty_summary(
        fitted, torch.as_tensor(x[:64]), y[:64], predict_logits(fitted, x)[:64]
    )
    np.testing.assert_allclose(metrics["uncertainty"]["total"], expected["total"], rtol=1e-5)


def test_prob_psenns_reference_is_a_class_balanced_sample_within_the_bound(
    parts_image_dataset, tmp_path, monkeypatch
):
    model, spec = built("prob_psenn")
    checkpoint = save_checkpoint(tmp_path / "best", model, spec, {})
    monkeypatch.setattr(decoded_memory, "SAMPLE_BYTES", 40 * ROW_BYTES)
    rows = reference_rows(parts_image_dataset)
    labels = read_labels(parts_image_dataset, "train")
    assert np.array_equal(labels, read_encoded(parts_image_dataset, "train")[1])
    assert np.bincount(labels[rows], minlength=4).tolist() == [10, 10, 10, 10]
    for c in range(4):  # the first rows of each class, in the split's order
        assert np.array_equal(rows[labels[rows] == c], np.flatnonzero(labels == c)[:10])

    fitted, _ = load_trained(checkpoint, parts_image_dataset)
    x, y = read_rows(parts_image_dataset, "train", rows)
    model.fit_reference(torch.as_tensor(x), torch.as_tensor(y))
    assert torch.equal(fitted.reference_quantiles, model.reference_quantiles)


def test_array_datasets_keep_their_whole_splits(digits_dataset):
    assert decoded_memory.sample_rows(load_meta(digits_dataset)) is None
    assert len(reference_rows(digits_dataset)) == load_meta(digits_dataset).row_counts["train"]
