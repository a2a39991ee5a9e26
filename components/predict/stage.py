"""The predict stage: a trained checkpoint on inputs it has not seen (``sennflow predict``).

The inputs are read as the run's dataset was (:mod:`components.data.new_inputs`), predicted a
batch at a time (:mod:`components.predict.predictions`), and a few of them explained as the
explain stage explains test samples, so the report shows why the model predicted what it did.
Everything is computed before anything is written: bad input fails the stage whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from components.data.errors import DataError
from components.data.new_inputs import (
    NO_LABEL,
    InputBatch,
    image_batches,
    image_inputs,
    image_table_batches,
    input_kind,
    read_table,
)
from components.data.reader import DatasetMeta, load_meta
from components.explain.model_explanations import explain_model
from components.explain.push_gallery import is_pushed
from components.explain.stage import pushed_images
from components.predict.predictions import (
    PredictConfig,
    Predictions,
    predict_inputs,
    prediction_summary,
    prediction_table,
)
from components.redact import redact_text
from components.training.trained import load_trained

BAD_FILES_SHOWN = 10  # undecodable files an error message names; the count says how many


@dataclass(frozen=True)
class PredictOutcome:
    """What the stage returns: the per-input table (``predictions.csv``), the report's summary
    and the explanations of a few inputs (:func:`explain_model`'s dict)."""

    table: pa.Table
    summary: dict
    explanations: dict


def predict_checkpoint(
    checkpoint: Path,
    dataset_path: Path,
    input_path: str,
    config: PredictConfig,
    *,
    seed: int = 0,
    log: Callable[..., Any] = lambda *args: None,
    on_batch: Callable[[int, int], object] | None = None,
) -> PredictOutcome:
    """Predict every input of ``input_path`` with the model of ``checkpoint``.

    Args:
        checkpoint: the trained model's checkpoint folder.
        dataset_path: the dataset it was trained on (its normalisation, classes, columns).
        input_path: a CSV or Parquet file, or an image file or folder of them.
        config: the stage's settings.
        seed: seed of the choice of explained inputs.
        log: called with %-style progress messages (about every tenth of the inputs).
        on_batch: called with the inputs done and their total after each batch.

    Raises:
        DataError: the input is not what the model takes, or (without
            ``config.skip_invalid``) holds files that cannot be decoded or are smaller than the
            model's input.
    """
    meta = load_meta(dataset_path)
    kind = input_kind(input_path, meta)
    batches, total = _batches(input_path, meta, kind, config.batch_size, log)
    model, _ = load_trained(checkpoint, dataset_path)
    steps = {max(1, total * k // 10) for k in range(1, 11)}

    def progress(done: int) -> None:
        if on_batch is not None:
            on_batch(done, total)
        if done in steps or done == total:
            log("predicted %d of %d inputs", done, total)

    keep = max(64, config.explain_samples)
    device = config.torch_device()
    log("predicting on %s, %d inputs per batch", device, config.batch_size)
    predictions = predict_inputs(model, batches, keep_inputs=keep, progress=progress, device=device)
    _check_bad_files(predictions, input_path, config.skip_invalid, log)
    summary = prediction_summary(predictions, meta.class_names, model)
    summary |= {"input": redact_text(str(input_path)), "kind": kind}
    explanations = _explanations(model, predictions, meta, dataset_path, config, seed)
    return PredictOutcome(
        table=prediction_table(predictions, meta.class_names, config.top_k),
        summary=summary,
        explanations=explanations,
    )


def _batches(
    input_path: str, meta: DatasetMeta, kind: str, batch_size: int, log
) -> tuple[Iterator[InputBatch], int]:
    """The input's batches and how many inputs there are."""
    if kind == "table":
        rows = read_table(input_path, meta)
        log("read %d rows of %s", len(rows.ids), redact_text(input_path))
        return _split(rows, batch_size), len(rows.ids)
    if kind == "image_table":
        batches, total = image_table_batches(input_path, meta, batch_size)
        log("read %d encoded images of %s", total, redact_text(input_path))
        return batches, total
    root, files, labels, ignored = image_inputs(input_path, meta)
    labelled = int((labels != NO_LABEL).sum())
    log(
        "found %d image files in %s (%d in folders named for the run's classes; %d other or "
        "hidden files left out)",
        len(files),
        redact_text(input_path),
        labelled,
        ignored,
    )
    return image_batches(root, files, labels, meta, batch_size), len(files)


def _split(rows: InputBatch, batch_size: int) -> Iterator[InputBatch]:
    for start in range(0, len(rows.ids), batch_size):
        end = start + batch_size
        yield InputBatch(rows.ids[start:end], rows.x[start:end], rows.labels[start:end])


def _check_bad_files(predictions: Predictions, input_path: str, skip: bool, log) -> None:
    """Refuse unusable files (undecodable, or smaller than the model's input) unless ``skip``
    (then log them); refuse an input none of whose files is usable either way."""
    bad = predictions.bad
    if not bad:
        return
    named = "; ".join(f"{path}: {reason}" for path, reason in bad[:BAD_FILES_SHOWN])
    more = f" and {len(bad) - BAD_FILES_SHOWN} more" if len(bad) > BAD_FILES_SHOWN else ""
    if not predictions.ids:
        raise DataError(
            f"none of its {len(bad)} image files is a usable image: {named}{more}", file=input_path
        )
    if not skip:
        raise DataError(
            f"{len(bad)} image file(s) are not usable images: {named}{more}; skip them with "
            "predict.skip_invalid=true",
            file=input_path,
        )
    log("skipped %d image file(s) that are not usable images: %s%s", len(bad), named, more)


def _explanations(
    model, predictions: Predictions, meta: DatasetMeta, dataset_path: Path, config, seed: int
) -> dict:
    """:func:`explain_model` on the first inputs, spread over the predicted classes; each
    sample's ``true`` class is the input's label, or None where it has none."""
    inputs = predictions.inputs
    predicted = predictions.logits[: len(inputs)].argmax(axis=1)
    result = explain_model(
        model,
        inputs,
        predicted,
        num_samples=config.explain_samples,
        class_names=list(meta.class_names),
        seed=seed,
        pushed_images=pushed_images(model, dataset_path) if is_pushed(model) else None,
    )
    for sample in result["samples"]:
        label = int(predictions.labels[sample["index"]])
        sample["true"] = None if label == NO_LABEL else label
        sample["true_name"] = None if label == NO_LABEL else meta.class_names[label]
        sample["input"] = predictions.ids[sample["index"]]
    return result
