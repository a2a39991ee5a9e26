"""The report's "Self-supervised pre-training" section: the objective, its loss curve, collapse
diagnostics per epoch, the probes, and (Barlow Twins) the cross-correlation matrix.

Shown when :attr:`components.report.ReportData.ssl` is set by the pretrain flow, or by a
pipeline's or sweep's pre-training stage (``ssl=<objective>``, ``"stage": true``). Data contract::

    {"model": "cnn", "config": {SSLConfig fields}, "checkpoint": "runs/pretrain/<id>/...",
     "history": [{"epoch": 0, "ssl_loss": None | 12.3, "embedding_std": 0.02,
                  "effective_rank": 40.1, "off_diagonal_mass": 0.01, "diagonal_mean": 0.6}, ...],
     "probes": {"linear_probe": 0.93, "knn_probe": 0.9, "random_init_linear_probe": 0.88,
                "random_init_knn_probe": 0.85, "test_embedding_std": 0.02,
                "test_effective_rank": 40.0, "probe_train_rows": 1257},
     "cross_correlation": [[...], ...]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from components.report import markup
from components.report.figure_set import FigureSet

_OBJECTIVES = {
    "barlow_twins": "Barlow Twins (Zbontar et al. 2021): the cross-correlation of the two views' "
    "batch-normalised projections is pulled to the identity, lambda = {lambd} on the "
    "off-diagonal terms",
    "directpred": "DirectPred (Tian et al. 2021): the online projection of one view predicts the "
    "EMA target's projection of the other (stop-gradient: {stop}); the linear predictor "
    "is set from the eigendecomposition of the running correlation of its inputs",
    "jepa": "JEPA-style self-distillation: the online projection of one view, through a "
    "trained linear predictor, predicts the EMA target's projection of the other in latent space "
    "(stop-gradient: {stop})",
}


def ssl_section(ssl: Mapping | None, figures: FigureSet) -> str:
    """The section of ``ssl`` (see ``ReportData.ssl``); "" without one."""
    if not ssl:
        return ""
    config, history, probes = ssl["config"], ssl["history"], ssl["probes"]
    parts = [
        markup.paragraph(
            _setup_text(ssl["model"], config, ssl.get("checkpoint"), ssl.get("stage", False))
        ),
        markup.table(
            ("probe", "pre-trained encoder", "same encoder, random init"), _probe_rows(probes)
        ),
        figures.add(
            "ssl_loss",
            _curve_figure(history, ("ssl_loss",), "SSL loss"),
            "The self-supervised loss per epoch (mean over the epoch's batches).",
        ),
        figures.add(
            "ssl_collapse",
            _collapse_figure(history),
            "Collapse diagnostics per epoch (epoch 0: the untrained encoder): the effective rank "
            "of the embeddings (exp of the entropy of their singular values) and the mean "
            "squared off-diagonal cross-correlation of two views' projections.",
        ),
    ]
    if config["objective"] == "barlow_twins" and ssl.get("cross_correlation"):
        parts.append(
            figures.add(
                "ssl_cross_correlation",
                _matrix_figure(ssl["cross_correlation"]),
                "The final cross-correlation of two views' projections (top-left block); Barlow "
                "Twins drives it towards the identity.",
            )
        )
    return markup.section("Self-supervised pre-training", *parts)


def _setup_text(model: str, config: Mapping, checkpoint: str | None, stage: bool) -> str:
    objective = _OBJECTIVES[config["objective"]].format(
        lambd=_lambda(config), stop="on" if config["stop_gradient"] else "off (ablation)"
    )
    use = (
        f" The encoder is saved in {checkpoint}; +model.params.pretrained={checkpoint} loads "
        "it into a model's encoder."
        if checkpoint
        else ""
    )
    if stage:  # the pipeline's pre-training stage
        use += " This run's model started its training (below) from this encoder."
    return (
        f"The encoder of {model} was trained without labels by {objective}, for "
        f"{config['epochs']} epochs at batch size {config['batch_size']}, with a projector of "
        f"{config['projector_layers']} layers of width {config['projector_width']}.{use}"
    )


def _lambda(config: Mapping) -> str:
    if config["lambd"] is not None:
        return f"{config['lambd']:g}"
    return f"0.0051 x 8192 / {config['projector_width']} (the reference's, scaled to the width)"


def _probe_rows(probes: Mapping) -> list[list]:
    return [
        [name.replace("_", " "), probes[name], probes.get(f"random_init_{name}")]
        for name in ("linear_probe", "knn_probe")
    ] + [
        ["test embedding std", probes["test_embedding_std"], None],
        ["test effective rank", probes["test_effective_rank"], None],
    ]


def _curve_figure(history: Sequence[Mapping], keys: Sequence[str], label: str) -> Figure:
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    for key in keys:
        rows = [r for r in history if r.get(key) is not None]
        ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    fig.tight_layout()
    return fig


def _collapse_figure(history: Sequence[Mapping]) -> Figure:
    fig = Figure(figsize=(9, 3.2))
    left, right = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in history]
    left.plot(epochs, [r["effective_rank"] for r in history], marker="o")
    left.set_xlabel("epoch")
    left.set_ylabel("embedding effective rank")
    right.plot(epochs, [r["off_diagonal_mass"] for r in history], marker="o", color="C1")
    right.set_xlabel("epoch")
    right.set_ylabel("mean off-diagonal C_ij^2")
    fig.tight_layout()
    return fig


def _matrix_figure(matrix: Sequence[Sequence[float]]) -> Figure:
    fig = Figure(figsize=(4.6, 4))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xlabel("projection dimension (view 2)")
    ax.set_ylabel("projection dimension (view 1)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig
