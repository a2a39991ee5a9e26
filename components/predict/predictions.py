"""Predictions of a trained model on inputs it has not seen (``sennflow predict``): per row the
top classes with their probabilities and, for a prototype model, the prototypes behind the
prediction; a summary for the report; metrics where the input says the true class."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from components.data.new_inputs import NO_LABEL, InputBatch
from components.evaluation.analyses import outcome_metrics
from components.evaluation.predict import eval_mode, model_logits
from components.explain.prototypes import prototype_classes
from components.models.base import PrototypeModel
from components.tensors import as_float_tensor

TOP_PROTOTYPES = 3  # the prototypes listed per row of a prototype model
LEAST_CONFIDENT = 20  # rows the report lists, least confident first


@dataclass(frozen=True)
class PredictConfig:
    """Settings of ``sennflow predict`` (the ``predict`` config group).

    Attributes:
        top_k: classes listed per input, most probable first.
        batch_size: inputs per forward pass.
        skip_invalid: skip image files that cannot be decoded or are smaller than the model's
            input (listed in the report) rather than fail.
        explain_samples: inputs the report explains.
        device: where the forward passes run: ``auto`` (a GPU when there is one), ``cpu``,
            ``cuda`` or ``cuda:<n>``.
    """

    top_k: int = 3
    batch_size: int = 64
    skip_invalid: bool = False
    explain_samples: int = 6
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("top_k", "batch_size", "explain_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"predict.{name} must be >= 1, got {getattr(self, name)}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"predict.device must be auto, cpu or cuda[:n], got {self.device}")

    def torch_device(self) -> str:
        """The device the forward passes run on.

        Raises:
            ValueError: ``cuda`` asked for on a machine without a CUDA GPU.
        """
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"predict.device={self.device}, but this machine has no CUDA GPU that torch "
                "can use; use predict.device=auto or cpu"
            )
        return self.device


@dataclass
class Predictions:
    """What :func:`predict_inputs` returns.

    Attributes:
        ids: Each row's source (file path, CSV line or row index).
        logits: ``(N, C)`` float32.
        labels: Each row's true class where the input says it, else ``NO_LABEL``.
        prototypes: For a prototype model, per row its top prototypes by absolute contribution
            to the predicted logit (``index``, ``class``, ``similarity``, ``contribution``);
            ``None`` for other models.
        bad: Files that could not be used, ``(path, reason)``.
        inputs: The first rows' inputs (as the model took them), for the report's figures.
    """

    ids: list[str] = field(default_factory=list)
    logits: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    prototypes: list[list[dict]] | None = None
    bad: list[tuple[str, str]] = field(default_factory=list)
    inputs: np.ndarray | None = None

    @property
    def probabilities(self) -> np.ndarray:
        """``(N, C)`` softmax of the logits, float64."""
        return torch.softmax(torch.as_tensor(self.logits, dtype=torch.float64), dim=1).numpy()


def predict_inputs(
    model: nn.Module,
    batches: Iterable[InputBatch],
    *,
    keep_inputs: int = 64,
    progress: Callable[[int], object] | None = None,
    device: str = "cpu",
) -> Predictions:
    """Run ``model`` (eval mode, no gradients) over ``batches``, holding one batch of inputs
    at a time plus the first ``keep_inputs`` rows; the model is left on the CPU.

    Args:
        model: the trained model.
        batches: :class:`~components.data.new_inputs.InputBatch` es.
        keep_inputs: how many of the first rows' inputs to keep for figures.
        progress: called after each batch with the inputs done, undecodable ones included.
        device: where the forward passes run.
    """
    is_prototype = isinstance(model, PrototypeModel)
    classes = prototype_classes(model) if is_prototype else []
    ids, logits, labels, prototypes, bad, kept = [], [], [], [], [], []
    seen = 0
    model.to(device)
    with eval_mode(model), torch.no_grad():
        for batch in batches:
            bad += batch.bad
            seen += len(batch.ids) + len(batch.bad)
            if batch.ids:
                inputs = as_float_tensor(batch.x).to(device)
                logits.append(model_logits(model(inputs)).float().cpu().numpy())
                if is_prototype:
                    prototypes += _top_prototypes(model, inputs, classes)
                if len(ids) < keep_inputs:
                    kept.append(batch.x[: keep_inputs - len(ids)])
                ids += batch.ids
                labels.append(batch.labels)
            if progress is not None:
                progress(seen)
    model.cpu()
    if not ids:
        return Predictions(bad=bad)
    return Predictions(
        ids=ids,
        logits=np.concatenate(logits),
        labels=np.concatenate(labels),
        prototypes=prototypes if is_prototype else None,
        bad=bad,
        inputs=np.concatenate(kept),
    )


def _top_prototypes(model: PrototypeModel, inputs: torch.Tensor, classes) -> list[list[dict]]:
    """Per row, the prototypes with the largest absolute contribution to the predicted logit."""
    top_k = min(TOP_PROTOTYPES, int(model.prototypes.shape[0]))
    return [
        [
            {"index": int(j), "class": classes[j], "similarity": float(s), "contribution": float(c)}
            for j, s, c in zip(e.prototype_indices, e.similarities, e.contributions, strict=True)
        ]
        for e in model.explain(inputs, top_k=top_k)
    ]


def prediction_table(
    predictions: Predictions, class_names: Sequence[str], top_k: int = 3
) -> pa.Table:
    """One row per input: ``input``, ``predicted`` (class name), ``probability``, the next
    classes and their probabilities (``class_2``, ``probability_2``, ...: ``top_k`` in all),
    ``true`` and ``correct`` where any row has a label, and a prototype model's
    ``prototype_<i>`` (``P<index> (<class>)``) with its similarity and contribution."""
    probs = predictions.probabilities
    k = min(top_k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    names = np.asarray([str(n) for n in class_names], dtype=object)
    columns: dict[str, list | np.ndarray] = {"input": predictions.ids}
    for rank in range(k):
        suffix = "" if rank == 0 else f"_{rank + 1}"
        columns["predicted" if rank == 0 else f"class{suffix}"] = names[order[:, rank]].tolist()
        columns[f"probability{suffix}"] = np.take_along_axis(probs, order[:, rank : rank + 1], 1)[
            :, 0
        ]
    labelled = predictions.labels != NO_LABEL
    if labelled.any():
        columns["true"] = [names[y] if y != NO_LABEL else None for y in predictions.labels]
        correct = (order[:, 0] == predictions.labels).tolist()
        columns["correct"] = [c if has else None for c, has in zip(correct, labelled, strict=True)]
    for rank in range(TOP_PROTOTYPES if predictions.prototypes else 0):
        rows = [row[rank] if rank < len(row) else None for row in predictions.prototypes]
        columns[f"prototype_{rank + 1}"] = [_prototype_name(p, names) for p in rows]
        for key in ("similarity", "contribution"):
            columns[f"prototype_{rank + 1}_{key}"] = [None if p is None else p[key] for p in rows]
    return pa.table(columns)


def _prototype_name(proto: dict | None, names: np.ndarray) -> str | None:
    if proto is None:
        return None
    return f"P{proto['index']}" + ("" if proto["class"] is None else f" ({names[proto['class']]})")


def prediction_summary(
    predictions: Predictions, class_names: Sequence[str], model: nn.Module
) -> dict:
    """What the report shows of the predictions: counts per predicted class, the top
    probabilities, the least confident rows, the files left out, and, over the rows with a
    label, the evaluation metrics (``metrics``, as the evaluate stage computes them)."""
    probs = predictions.probabilities
    predicted = probs.argmax(axis=1)
    top = probs.max(axis=1)
    order = np.argsort(top, kind="stable")[:LEAST_CONFIDENT]
    names = [str(n) for n in class_names]
    runner_up = np.argsort(-probs, axis=1, kind="stable")[:, 1] if probs.shape[1] > 1 else predicted
    summary = {
        "rows": len(predictions.ids),
        "counts": np.bincount(predicted, minlength=len(names)).tolist(),
        "top_probability": top.tolist(),
        "least_confident": [
            {
                "row": int(i),
                "input": predictions.ids[i],
                "predicted": names[predicted[i]],
                "probability": float(top[i]),
                "runner_up": names[runner_up[i]],
                "runner_up_probability": float(probs[i, runner_up[i]]),
            }
            for i in order
        ],
        "bad_files": [{"path": p, "reason": r} for p, r in predictions.bad],
        "labelled": int((predictions.labels != NO_LABEL).sum()),
        "prototypes": predictions.prototypes is not None,
    }
    if summary["labelled"]:
        has = predictions.labels != NO_LABEL
        logits = torch.as_tensor(predictions.logits[has])
        summary["metrics"] = outcome_metrics(
            model, logits, predictions.labels[has], num_classes=len(names), n_bins=15
        )
    return summary
