"""A sweep trial's self-supervised pre-training (``sennflow sweep ssl=<objective>``).

Before its fit, a :func:`components.search.trials.fit_trial` trial pre-trains the configured
model's encoder in its own process (:func:`components.ssl.learner.pretrain_encoder`, the same
learner as ``sennflow pretrain``) on the training split's inputs, with the sweep's ``ssl`` config
and the trial's sampled ``ssl.*`` values; the encoder goes to a trial-local SSL checkpoint folder
that the trial's model starts from (``ModelSpec.encoder_from``). The sweep's retrain pre-trains
again, with the best trial's values, through the pipeline's Ray Train stage.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from components.data.reader import read_split
from components.search.space import apply_ssl_overrides
from components.ssl.config import SSLConfig
from components.ssl.learner import pretrain_encoder
from components.training.checkpoint import ModelSpec
from components.training.ssl_ray import divergence_check


def pretrain_trial_encoder(
    ssl: SSLConfig, config: dict, spec: ModelSpec, dataset: Path | str, folder: Path
) -> tuple[ModelSpec, dict]:
    """Pre-train ``spec``'s encoder into ``folder`` with the trial's ``ssl.*`` values.

    Args:
        ssl: the sweep's ``ssl`` group.
        config: the trial's sampled values.
        spec: the trial's model.
        dataset: the local dataset folder (its training split's inputs; labels unused).
        folder: where the trial's SSL checkpoint goes.

    Returns:
        ``spec`` starting from the pre-trained encoder, and the metrics every report of the
        trial carries: the last SSL loss and the width of the projector that was trained.
    """
    cfg = apply_ssl_overrides(ssl, config)
    x, _ = read_split(dataset, "train")  # the labels are read and never used
    result = pretrain_encoder(
        spec.name,
        x,
        cfg,
        num_classes=spec.num_classes,
        tiny=spec.tiny,
        model_params=spec.kwargs,
        check=divergence_check(cfg),  # fails the trial naming ssl.lr, as `sennflow pretrain`
    )
    saved = result.save(folder)
    metrics = {
        "ssl_loss": result.history[-1]["ssl_loss"],
        # measured on the trained learner, not copied from the config
        "ssl_projector_width": result.net.projector[-1].out_features,
    }
    return replace(spec, encoder_from=str(saved)), metrics
