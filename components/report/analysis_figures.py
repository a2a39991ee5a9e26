"""Figures of the model-specific analyses: certified radii and predictive uncertainty."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure


def certified_radius_figure(robustness: Mapping) -> Figure:
    """Histogram of the certified l2 radius of each test prediction (CBC, robust RBF paper)."""
    radius = np.asarray(robustness["radius"], dtype=float)
    correct = np.asarray(robustness["correct"], dtype=bool)
    fig = Figure(figsize=(5.5, 3.2))
    ax = fig.add_subplot()
    bins = np.linspace(0.0, max(float(radius.max(initial=0.0)), 1e-6), 30)
    ax.hist(radius[correct], bins=bins, alpha=0.7, label="correct")
    ax.hist(radius[~correct], bins=bins, alpha=0.7, label="wrong")
    ax.legend()
    ax.axvline(0.25, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("certified l2 radius (standardised input space)")
    ax.set_ylabel("test predictions")
    return fig


_UNCERTAINTY_PANELS = {
    "total": "total uncertainty (nats)",
    "aleatoric": "aleatoric uncertainty (nats)",
    "epistemic": "epistemic uncertainty (nats)",
    "explanation_percentile": "explanation uncertainty\n(distance percentile in its class)",
}


def uncertainty_figure(uncertainty: Mapping) -> Figure:
    """Histograms of each uncertainty, for right and wrong predictions (Prob-PSENN)."""
    wrong = np.asarray(uncertainty["wrong"], dtype=bool)
    names = [n for n in _UNCERTAINTY_PANELS if n in uncertainty]
    fig = Figure(figsize=(4.0 * len(names), 3.2))
    for i, name in enumerate(names):
        values = np.nan_to_num(np.asarray(uncertainty[name], dtype=float))
        ax = fig.add_subplot(1, len(names), i + 1)
        bins = np.linspace(0.0, max(float(values.max(initial=0.0)), 1e-6), 30)
        ax.hist(values[~wrong], bins=bins, alpha=0.7, density=True, label="right")
        if wrong.any():
            ax.hist(values[wrong], bins=bins, alpha=0.7, density=True, label="wrong")
        ax.set_title(_UNCERTAINTY_PANELS[name], fontsize=9)
        ax.legend()
    return fig
