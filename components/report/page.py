"""The per-run HTML report: one self-contained page plus the figures as PNG files.

What it shows is a :class:`~components.report.data.ReportData`; each section of the page is
built by its own module (``*_section.py``), which saves its figures through a
:class:`~components.report.figure_set.FigureSet`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from components import atomic
from components.data.duplicates import duplicate_notes
from components.data.reader import index_note
from components.data.spec import source_fields
from components.report import markup
from components.report.analysis_figures import certified_radius_figure, uncertainty_figure
from components.report.boosted_section import boosted_section
from components.report.checks_section import checks_section
from components.report.circuit_section import circuit_section
from components.report.concept_section import concept_parts
from components.report.continual_section import continual_section
from components.report.data import ReportData
from components.report.display import InputScale
from components.report.explanation_figures import attribution_figure
from components.report.federated_section import federated_section
from components.report.figure_set import FigureSet
from components.report.figures import (
    class_label,
    confusion_matrix_figure,
    history_axis,
    learning_curves_figure,
    reliability_figure,
)
from components.report.ftwt_section import ftwt_section
from components.report.posthoc_section import posthoc_parts
from components.report.predict_section import predict_section
from components.report.prototype_section import gallery_parts, sample_explanation_parts
from components.report.prune_section import prune_section
from components.report.pskd_section import pskd_section
from components.report.search_section import search_section
from components.report.self_distill_section import self_distill_parts
from components.report.ssl_section import ssl_section
from components.report.xnesyl_section import xnesyl_section

_SCALAR_METRICS = ("accuracy", "macro_f1", "nll", "ece", "num_samples")
_IMAGE_FACTS = ("layout", "image_size", "normalization.source", "ignored_files")
FEATURES_SHOWN = 100  # a table's features listed by name with their statistics
CONFUSED_PAIRS = 5  # most frequent (true, predicted) mistakes listed by class name
CLASSES_SHOWN = 30  # classes whose rows per split the Data section lists
IMBALANCED = 3.0  # largest / smallest class in train at or above which the report says so


def _headline_section(data: ReportData) -> str:
    if not data.headline:
        return ""
    return markup.section("Headline", markup.key_value_table(data.headline, ("metric", "value")))


def _data_section(data_meta: Mapping, title: str = "Data") -> str:
    parts = []
    source = data_meta.get("source")
    if isinstance(source, Mapping):
        rows = {**_used_source_fields(source, data_meta), **_image_facts(data_meta)}
        if "normalization.source" in rows and rows["normalization.source"] == rows.get(
            "normalization"
        ):
            del rows["normalization.source"]  # the data config's own value, shown above it
        if rows.get("feature_shape") is None and "feature_shape" in data_meta:
            rows["feature_shape"] = data_meta["feature_shape"]  # the source's own shape
        parts.append(markup.key_value_table(rows, ("source", "value")))
    elif source is not None:
        parts.append(markup.paragraph(f"Source: {markup.format_value(source)}"))
    parts += _feature_parts(data_meta)
    row_counts = data_meta.get("row_counts") or {}
    if row_counts:
        parts.append(markup.table(("split", "rows"), row_counts.items()))
    parts += _class_count_parts(data_meta)
    dropped = data_meta.get("dropped_rows", 0)
    unit = "image files" if data_meta.get("kind") == "image" else "rows"
    parts.append(markup.paragraph(f"{unit.capitalize()} dropped during validation: {dropped}"))
    by_reason = data_meta.get("dropped_by_reason") or {}
    if by_reason:
        parts.append(markup.table(("reason", f"{unit} dropped"), by_reason.items()))
    parts += markup.file_list("Dropped files", data_meta.get("dropped_files") or [], "meta.json")
    parts += _duplicate_parts(data_meta.get("duplicates") or {})
    filled = data_meta.get("filled_missing") or {}
    if filled:
        note = (
            "Missing values filled (data.fill_missing): a number with its column's mean over "
            "the training split; a word column's row gets no word (all its 0/1 features 0)."
        )
        parts.append(markup.paragraph(note))
        parts.append(markup.table(("column", "values filled"), filled.items()))
    return markup.section(title, *parts)


def _class_count_parts(data_meta: Mapping) -> list[str]:
    """Rows per class and split (the first :data:`CLASSES_SHOWN` classes, rarest first beyond
    that), with a note when the training split's classes are imbalanced."""
    counts = data_meta.get("class_counts")
    names = list(data_meta.get("class_names") or [])
    if not isinstance(counts, Mapping) or not isinstance(counts.get("train"), list):
        return []
    train = np.asarray(counts["train"])
    splits = [split for split in ("train", "val", "test") if isinstance(counts.get(split), list)]
    order = np.arange(len(train))
    title = "Rows per class"
    if len(order) > CLASSES_SHOWN:
        order = np.argsort(train, kind="stable")[:CLASSES_SHOWN]
        title += f" (the {CLASSES_SHOWN} rarest in train, of {len(train)})"
    rows = [(class_label(names, int(k)), *(counts[split][k] for split in splits)) for k in order]
    parts = [f"<h3>{title}</h3>", markup.table(("class", *splits), rows)]
    present = train[train > 0]
    if present.size and present.max() >= IMBALANCED * present.min():
        parts.append(
            markup.paragraph(
                f"The classes are imbalanced: the largest has {present.max() / present.min():.1f}x "
                "the training rows of the smallest. Macro-F1 and per-class accuracy say more than "
                "accuracy here; train.class_weights=balanced weighs every class equally in the "
                "loss."
            )
        )
    return parts


def _feature_parts(data_meta: Mapping) -> list[str]:
    """A table's features by name, with the training split's mean and std of each (and what
    the 0/1 features of its word columns mean)."""
    names = data_meta.get("feature_names")
    if not isinstance(names, list) or not names:
        return []
    normalization = data_meta.get("normalization") or {}
    mean, std = (normalization.get(key) for key in ("mean", "std"))
    if not all(isinstance(v, list) and len(v) == len(names) for v in (mean, std)):
        mean = std = [None] * len(names)  # statistics per channel, or none: names alone
    rows = list(zip(names, mean, std, strict=True))
    shown = rows[:FEATURES_SHOWN]
    more = len(rows) - len(shown)
    note = f" (the first {FEATURES_SHOWN})" if more else ""
    parts = [f"<h3>Features ({len(names)}){note}</h3>"]
    if data_meta.get("index_columns"):
        parts.append(markup.paragraph(index_note(list(data_meta["index_columns"]))))
    if data_meta.get("categories"):
        words = ", ".join(map(str, data_meta["categories"]))
        parts.append(
            markup.paragraph(
                f"Columns of words ({words}) are one 0/1 feature per word, named column=word; "
                "its train mean is the share of training rows with that word."
            )
        )
    return [*parts, markup.table(("feature", "train mean", "train std"), shown)]


def _duplicate_parts(found: Mapping) -> list[str]:
    """Byte-identical images the ingest found: a sentence per kind, and its examples."""
    if not found:
        return []
    parts = ["<h3>Duplicate images</h3>"]
    parts += [markup.paragraph(note) for note in duplicate_notes(found)]
    if found.get("across_splits_examples"):
        pairs = found["across_splits_examples"]
        parts.append(markup.table(("val/test image", "the same image, earlier split"), pairs))
    if found.get("across_classes_examples"):
        groups = [("; ".join(group),) for group in found["across_classes_examples"]]
        parts.append(markup.table(("identical images (class)",), groups))
    return parts


def _used_source_fields(source: Mapping, data_meta: Mapping) -> dict:
    """The data config keys that mean something for the source used (``source_fields``), less
    the fraction of each split the source fixed by its folder or file names."""
    name = source.get("source")
    used = source_fields(name) if isinstance(name, str) else tuple(source)
    unused = {f"{split}_fraction" for split in data_meta.get("fixed_splits") or ()}
    return {key: source[key] for key in used if key in source and key not in unused}


def _image_facts(data_meta: Mapping) -> dict:
    """How an image dataset was read: layout, image size, normalisation, ignored files."""
    flat = markup.flatten({k: v for k, v in data_meta.items() if k != "source"})
    facts = {key: flat[key] for key in _IMAGE_FACTS if key in flat}
    normalization = data_meta.get("normalization") or {}
    if facts and len(normalization.get("mean") or []) <= 3:
        facts |= {f"normalization.{k}": normalization.get(k) for k in ("mean", "std")}
    return facts


def _training_section(
    history: Sequence[Mapping], training: Mapping | None, figures: FigureSet
) -> str:
    x = history_axis(history)
    fig = learning_curves_figure(history, x)
    if fig is None:
        return markup.section("Training", markup.paragraph("No training history.", "note"))
    caption = f"Learning curves: total loss, accuracy, each loss term and learning rate per {x}"
    curves = figures.add("learning_curves", fig, caption)
    rounds = self_distill_parts((training or {}).get("self_distill_rounds") or [], figures)
    return markup.section("Training", curves, *rounds, *_recovery_parts(training or {}))


def _recovery_parts(training: Mapping) -> list[str]:
    """Where the workers ran, attempt by attempt, and the checkpoints training resumed from."""
    parts = []
    resumed_at = training.get("resumed_at") or []
    if resumed_at:
        epochs = ", ".join(str(epoch) for epoch in resumed_at)
        parts.append(
            markup.paragraph(
                f"Resumed {len(resumed_at)} time(s) from a checkpoint, after epoch {epochs} "
                "(a worker or node failed, or the run continued a checkpoint)."
            )
        )
    attempts = training.get("attempts") or []
    if attempts:
        rows = [  # node ids shortened as the training log shows them; `ray list nodes` lists all
            (a["attempt"], f"{a['first_epoch']}-{a['last_epoch']}", _node_ids(a["nodes"]))
            for a in attempts
        ]
        parts.append(markup.table(("attempt", "epochs", "Ray node of each rank"), rows))
    return parts


def _node_ids(nodes: Sequence[str]) -> str:
    """Ray node ids (56 hex digits) by their first 8, as the training log names them."""
    return ", ".join(node[:8] for node in nodes)


def _per_class_table(metrics: Mapping, class_names: Sequence[str]) -> str:
    accuracies = metrics.get("per_class_accuracy")
    if not accuracies:
        return ""
    matrix = metrics.get("confusion_matrix")
    support = [int(sum(row)) for row in matrix] if matrix else [None] * len(accuracies)
    rows = [
        (class_label(class_names, k), accuracy, support[k]) for k, accuracy in enumerate(accuracies)
    ]
    return markup.table(("class", "accuracy", "samples"), rows)


def _confused_pairs_table(matrix, class_names: Sequence[str]) -> str:
    """The most frequent (true, predicted) mistakes by class name, most first."""
    if not matrix:
        return ""
    counts = np.asarray(matrix, dtype=np.int64)
    mistakes = counts * (1 - np.eye(len(counts), dtype=np.int64))
    order = np.argsort(-mistakes, axis=None, kind="stable")[:CONFUSED_PAIRS]
    rows = [
        (
            class_label(class_names, int(i)),
            class_label(class_names, int(j)),
            int(mistakes[i, j]),
            float(mistakes[i, j] / counts[i].sum()),
        )
        for i, j in zip(*np.unravel_index(order, counts.shape), strict=True)
        if mistakes[i, j] > 0
    ]
    header = ("true class", "predicted as", "samples", "share of true class")
    return markup.table(header, rows) if rows else ""


def _metrics_section(data: ReportData, figures: FigureSet) -> str:
    metrics = data.metrics
    scalars = {k: metrics[k] for k in _SCALAR_METRICS if k in metrics}
    scalars |= {
        k: v
        for k, v in metrics.items()
        if k not in scalars and isinstance(v, int | float | str | type(None))
    }
    parts = [markup.key_value_table(scalars, ("metric", "value"))] if scalars else []
    if metrics.get("confusion_matrix"):
        fig = confusion_matrix_figure(metrics["confusion_matrix"], data.class_names)
        parts.append(figures.add("confusion_matrix", fig, "Confusion matrix (rows: true class)"))
    if metrics.get("reliability"):
        fig = reliability_figure(metrics["reliability"], metrics.get("ece"))
        caption = "Reliability diagram: accuracy against top-label confidence per bin"
        parts.append(figures.add("reliability", fig, caption))
    confused = _confused_pairs_table(metrics.get("confusion_matrix"), data.class_names)
    if confused:
        parts += ["<h3>Most frequent mistakes</h3>", confused]
    per_class = _per_class_table(metrics, data.class_names)
    if per_class:
        parts += ["<h3>Per-class accuracy</h3>", per_class]
    if not parts:
        parts.append(markup.paragraph("No evaluation metrics.", "note"))
    return markup.section("Evaluation", *parts)


def _analysis_section(data: ReportData, figures: FigureSet) -> str:
    """What the model's paper measures beyond accuracy: robustness, uncertainty, part quality."""
    metrics, parts = data.metrics, []
    if "robustness" in metrics:
        robustness = metrics["robustness"]
        rows = robustness["certified_accuracy"].items()
        parts += [
            "<h3>Certified robustness</h3>",
            markup.table(("l2 epsilon", "certified accuracy"), rows),
            figures.add(
                "certified_radius",
                certified_radius_figure(robustness),
                "Certified l2 radius per test prediction (dashed: epsilon 0.25)",
            ),
        ]
    if "uncertainty" in metrics:
        unc = metrics["uncertainty"]
        keys = ("auroc_wrong", "auroc_ood_noise", "mean_total_right", "mean_total_wrong")
        parts += [
            "<h3>Predictive uncertainty</h3>",
            markup.key_value_table({k: unc[k] for k in (*keys, "mean_total_ood_noise")}),
            figures.add(
                "uncertainty",
                uncertainty_figure(unc),
                "Uncertainty of right and wrong test predictions (epistemic = total - aleatoric); "
                "explanation uncertainty: how far the input is from its explaining prototype, "
                "as a percentile of the training inputs of the predicted class",
            ),
        ]
    if "prototype_quality" in metrics:
        parts += _prototype_quality_parts(metrics["prototype_quality"], data.class_names)
    return markup.section("Model analysis", *parts) if parts else ""


def _prototype_quality_parts(quality: Mapping, class_names: Sequence[str]) -> list[str]:
    rows = [
        (state, scores["consistency"], scores["stability"])
        for state, scores in quality.items()
        if state in ("trained", "untrained")
    ]
    detail = [
        (
            f"P{i}",
            class_label(class_names, row.get("class")),
            row.get("part") or "none",
            row.get("frequency"),
            "yes" if row.get("consistent") else "no",
        )
        for i, row in enumerate(quality.get("per_prototype", []))
    ]
    return [
        "<h3>Prototype consistency and stability (against ground-truth part masks)</h3>",
        markup.table(("network", "consistency", "stability"), rows),
        markup.table(("prototype", "class", "most hit part", "frequency", "consistent"), detail),
    ]


def _sample_summary_table(samples: Sequence[Mapping], class_names: Sequence[str]) -> str:
    """Per sample: prediction, and its logit as bias plus the prototypes' contributions."""
    rows = [
        (
            sample["index"],
            class_label(class_names, sample["true"]),
            class_label(class_names, sample["predicted"]),
            sample.get("probability"),
            sample["logit"],
            sample["bias"],
            sample["total_contribution"],
            sample["decomposition_error"],
        )
        for sample in samples
    ]
    header = (
        "sample",
        "true",
        "predicted",
        "probability",
        "logit",
        "bias",
        "sum of contributions",
        "|bias + sum - logit|",
    )
    return markup.table(header, rows)


def _top_prototype_table(samples: Sequence[Mapping], class_names: Sequence[str]) -> str:
    """Per sample, its top prototypes by absolute contribution to the predicted logit."""
    rows = [
        (
            sample["index"],
            f"P{proto['index']} ({class_label(class_names, proto['class'])})",
            proto["distance"],
            proto["similarity"],
            proto["contribution"],
        )
        for sample in samples
        for proto in sample["prototypes"]
    ]
    header = ("sample", "prototype (class)", "distance", "similarity", "contribution")
    return markup.table(header, rows)


def _explanation_section(data: ReportData, figures: FigureSet) -> str:
    """The model's own explanations (prototypes, IG), then the post-hoc methods' (``post_hoc``)."""
    explanations = data.explanations or {}
    post_hoc = explanations.get("post_hoc")
    if not explanations.get("samples") and not post_hoc:
        return ""
    scale = input_scale(data)
    parts = _model_explanation_parts(data, scale, figures) if explanations.get("samples") else []
    if post_hoc:
        post_hoc = {**post_hoc, "input_scale": scale}
    parts += posthoc_parts(post_hoc or {}, data.feature_shape, data.class_names, figures)
    return markup.section("Explanations", *parts)


def input_scale(data: ReportData) -> InputScale:
    """How the report draws inputs: de-normalised with the dataset's statistics, in the range
    of the explained test samples (see :meth:`InputScale.from_meta`)."""
    explanations = data.explanations or {}
    shown = explanations.get("inputs")
    if shown is None:
        shown = (explanations.get("post_hoc") or {}).get("inputs")
    return InputScale.from_meta(data.data_meta, data.feature_shape, shown)


def _model_explanation_parts(data: ReportData, scale: InputScale, figures: FigureSet) -> list[str]:
    explanations = data.explanations
    samples = explanations["samples"]
    inputs = np.asarray(explanations["inputs"])
    names = data.class_names
    gallery = explanations.get("gallery")
    parts = gallery_parts(gallery, scale, names, figures) if gallery is not None else []
    if explanations.get("kind") == "prototype":
        parts.append("<h3>This looks like that</h3>")
        parts += sample_explanation_parts(samples, inputs, gallery, scale, names, figures)
        parts += [_sample_summary_table(samples, names), _top_prototype_table(samples, names)]
    if explanations.get("because"):
        parts += _because_parts(explanations["because"], gallery, names)
    parts += concept_parts(explanations, scale, names, figures)
    if explanations.get("attributions") is not None:
        fig = attribution_figure(
            samples, inputs, np.asarray(explanations["attributions"]), scale, names
        )
        caption = "Integrated Gradients of the predicted logit (red raises it, blue lowers it)"
        parts += ["<h3>Attributions</h3>", figures.add("attributions", fig, caption)]
    return parts


def _because_parts(because, gallery, class_names) -> list[str]:
    """Per prototype, how much its similarity drops when one visual characteristic changes."""
    keys = [k for k in ("hue", "saturation", "contrast", "texture", "shape") if k in because[0]]
    classes = (gallery or {}).get("classes") or [None] * len(because)
    rows = [
        (f"P{j}", class_label(class_names, classes[j]), *(row[k] for k in keys))
        for j, row in enumerate(because)
    ]
    note = (
        "Mean drop of each prototype's similarity when the test images' characteristic is "
        "perturbed (Nauta et al., 2021): larger means the prototype relies on it more."
    )
    return [
        "<h3>This looks like that, because…</h3>",
        markup.paragraph(note, "note"),
        markup.table(("prototype", "class", *keys), rows),
    ]


def _unscored(data: ReportData) -> bool:
    """A predict run whose inputs name no class: it has nothing to evaluate."""
    return data.predictions is not None and not data.metrics


def _provenance_sections(data: ReportData) -> str:
    config = markup.section("Configuration", markup.preformatted(data.config_yaml))
    meta = markup.section("Run", markup.key_value_table(data.meta)) if data.meta else ""
    return config + meta


def _named_classes(section: Mapping | None, class_names: Sequence[str]) -> Mapping | None:
    """A federated or continual section with its class indices (each task's classes, each
    client's classes) replaced by class names."""
    if not section:
        return section
    named = dict(section)
    if named.get("tasks"):
        named["tasks"] = [[class_label(class_names, k) for k in task] for task in named["tasks"]]
    if named.get("clients"):
        named["clients"] = [
            {**c, "classes": [class_label(class_names, k) for k in c.get("classes") or []]}
            for c in named["clients"]
        ]
    return named


def write_report(run_dir: Path, data: ReportData) -> Path:
    """Write ``run_dir/figures/*.png`` and the self-contained ``run_dir/report.html``.

    Each file is written to a temporary name and renamed, so a rewritten report replaces the
    old one whole (a reader never sees half a page, and a crash leaves the old one).

    Args:
        run_dir: the run folder (created if missing).
        data: what to show.

    Returns:
        The path of ``report.html``.
    """
    run_dir = Path(run_dir)
    figures = FigureSet(run_dir / "figures")
    # Federated and continual runs train inside their actors: no single model to show; nor has
    # a pretrain run (an ssl section without training: a pipeline's pre-training stage has one).
    pretrain_only = data.ssl and not data.training
    # A prune run's rounds are many models; a pruning sweep's retrain reports its last ticket's.
    lottery_only = data.prune and not data.history
    # A sweep with search.retrain=false trained no model past its trials.
    search_only = data.search and data.search.get("retrained") is False
    one_model = not (
        data.federated or data.continual or lottery_only or pretrain_only or search_only
    )
    trained_here = one_model and not data.predictions  # a predict run trained nothing
    body = [
        _headline_section(data),
        predict_section(data.predictions, data.class_names, figures),
        search_section(data.search, figures),
        federated_section(_named_classes(data.federated, data.class_names), figures),
        continual_section(_named_classes(data.continual, data.class_names), figures),
        prune_section(data.prune, figures),
        ssl_section(data.ssl, figures),
        _data_section(data.data_meta, "Data" if data.predictions is None else "Training data"),
        circuit_section(data.circuit, figures),
        _training_section(data.history, data.training, figures) if trained_here else "",
        boosted_section(data.history, figures) if one_model else "",
        pskd_section(data.history, figures) if one_model else "",
        xnesyl_section(data.history, figures) if one_model else "",
        ftwt_section(data.ftwt, figures),
        _metrics_section(data, figures) if one_model and not _unscored(data) else "",
        _analysis_section(data, figures),
        _explanation_section(data, figures),
        checks_section((data.explanations or {}).get("checks"), figures),
        _provenance_sections(data),
    ]
    page = markup.page(data.title, f"run {data.run_id}", body)
    return atomic.write_text(run_dir / "report.html", page, encoding="utf-8")
