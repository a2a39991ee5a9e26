"""Trust check ``beyond``: adversarial example detection with BEYOND (He et al., ICML 2024,
"Be Your Own Neighborhood"; reference code allenhzy/BEYOND, read for this).

An input whose augmented neighbours, seen through a self-supervised model, disagree with the
classifier's label or drift away in representation is flagged as adversarial. The check
attacks test inputs with PGD at two l2 budgets and with an adaptive attack that also targets
the detector, and reports the detection AUROC (clean vs adversarial) of each, the attacks'
success rates, and the paper's threshold rule set on clean validation inputs.

Pieces: :mod:`~components.explain.checks.beyond.encoder` (the SSL encoder: the run's
pre-training stage output, else one trained here), :mod:`~components.explain.checks.beyond.detector`
(scores, rule, AUROC), :mod:`~components.explain.checks.beyond.attacks`
(the adaptive attack), :mod:`~components.explain.checks.beyond.evaluation`; each names its
departures from the paper. It applies to every classifier (image or row inputs); when too
few test inputs are classified right, or no attack succeeds, the verdict says so.
"""

from __future__ import annotations

import math

from components.data.reader import read_split
from components.explain.checks.beyond.encoder import run_ssl_folder, ssl_model
from components.explain.checks.beyond.evaluation import evaluate_detector, summary
from components.explain.checks.beyond.settings import BeyondSettings, parse_settings
from components.training.checkpoint import load_spec

MIN_CLEAN = 10  # correctly classified test inputs below which an AUROC means little


def validate(settings: dict) -> None:
    """``ValueError`` naming ``explain.beyond.<key>`` for a bad value."""
    parse_settings(settings)


def run(context) -> dict:
    """Score the run's model with BEYOND; the result carries the report section's arrays."""
    settings = parse_settings(context.settings)
    spec = load_spec(context.checkpoint)
    x_train, y_train = read_split(context.dataset_path, "train", limit=settings.ssl_rows)
    x_val, _ = read_split(context.dataset_path, "val", limit=settings.val_samples)
    x_test, y_test = read_split(context.dataset_path, "test", limit=settings.samples)
    folder = run_ssl_folder(context.checkpoint, spec.encoder_from)
    context.log("beyond: %s", "SSL encoder " + str(folder) if folder else "training an encoder")
    ssl = ssl_model(
        folder,
        context.model,
        spec,
        x_train,
        y_train,
        epochs=settings.ssl_epochs,
        views=settings.views,
        seed=context.seed,
    )
    evaluation = evaluate_detector(
        context.model, ssl, x_test, y_test, x_val, settings, seed=context.seed
    )
    result = {"encoder": ssl.source, "settings": _shown(settings), **evaluation}
    result["verdict"] = verdict(evaluation, settings, ssl.source)
    result["summary"] = {"encoder": ssl.source, **summary(evaluation)}
    return result


def verdict(evaluation: dict, settings: BeyondSettings, encoder: str) -> str:
    """One line: the AUROC at both budgets against the floor, the adaptive figure beside."""
    clean = len(evaluation["clean"]["score"])
    if clean < MIN_CLEAN:
        return (
            f"not applicable: the model classifies only {clean} of the test inputs right "
            f"(BEYOND needs at least {MIN_CLEAN} clean ones to compare with)"
        )
    *pgd, adaptive = evaluation["attacks"]
    if any(math.isnan(row["auroc"]) for row in pgd):
        failed = ", ".join(row["name"] for row in pgd if math.isnan(row["auroc"]))
        return f"not applicable: no adversarial input at {failed} (the attack never succeeded)"
    passed = all(row["auroc"] >= settings.floor for row in pgd)
    figures = " and ".join(f"{row['auroc']:.2f} at eps={row['eps']:g}" for row in pgd)
    return (
        f"{'pass' if passed else 'flag'}: BEYOND detects PGD l2 adversarial inputs with AUROC "
        f"{figures} ({'>=' if passed else 'not all >='} floor {settings.floor:g}); "
        f"adaptive attack: {_adaptive(adaptive)}; clean inputs flagged "
        f"{evaluation['clean']['flagged']:.1%}; encoder: {encoder}"
    )


def _adaptive(row: dict) -> str:
    if math.isnan(row["auroc"]):
        return f"never succeeded at eps={row['eps']:g}"
    return f"AUROC {row['auroc']:.2f} at eps={row['eps']:g}, success {row['success_rate']:.0%}"


def _shown(settings: BeyondSettings) -> dict:
    return {
        "neighbours": settings.neighbours,
        "k": settings.k,
        "alpha": settings.alpha,
        "clean_fpr": settings.clean_fpr,
        "steps": settings.steps,
        "samples": settings.samples,
    }
