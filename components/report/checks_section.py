"""The report's "Trust checks" section: one subsection per check ``explain.checks`` ran, its
one-line verdict first, then what the check's own section module draws
(``components.report.<check>_check_section.section(result, figures)``, see
:mod:`components.explain.checks`).

Shown when the explanations carry ``checks``: ``{name: {"verdict": str, "summary": {...},
"seconds": float, ...}}``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from components.report import markup
from components.report.figure_set import FigureSet

TITLES = {
    "sanity": "Explanation sanity check (model-parameter randomisation)",
    "sae": "Sparse autoencoder and transcoder features",
    "segmentation": "Segmentation from explanation maps",
    "naps": "Neural activation patterns",
    "beyond": "Adversarial example detection (BEYOND)",
}


def checks_section(checks: Mapping[str, Mapping] | None, figures: FigureSet) -> str:
    """The "Trust checks" section of ``checks``; "" without any."""
    if not checks:
        return ""
    parts = []
    for name, result in checks.items():
        module = importlib.import_module(f"components.report.{name}_check_section")
        parts.append(
            f"<h3>{markup.esc(TITLES.get(name, name))}</h3>"
            + f"<p><strong>Verdict:</strong> {markup.esc(result['verdict'])}</p>"
            + module.section(result, figures)
        )
    return markup.section("Trust checks", *parts)
