"""The Pareto front of a two-objective sweep: every trial as a point, the front connected, the
retrained (picked) point marked, and a table of each point's configuration.

``pareto`` is :attr:`components.search.tune_sweep.SweepOutcome.pareto` as the report gets it:
``objectives``, ``modes``, ``front`` (trial ids), ``pick``, ``pick_within`` and ``picked``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from components.report import markup
from components.report.search_figures import metric_of

# Tune names a trial folder <trainable>_<trial id>_<index>_<config>_<date>
_TRIAL_INDEX = re.compile(r"_[0-9a-f]{5,8}_(?:\d{5}_)?(\d+)_")
_PICKED = "#d62728"
_FRONT = "#1f77b4"
_OTHER = "#9aa5b1"
_RULES = {
    "knee": "the front point nearest the utopia point (the best value of each objective) after "
    "min-max scaling each objective over the front",
    "within": "the front point best on {second} among those within {within} of the best {first}",
}


def scored_trials(trials: Sequence[Mapping], objectives: Sequence[str]) -> list[Mapping]:
    """The trials with a value of every objective (the points of the figure)."""
    return [t for t in trials if all(metric_of(t, name) is not None for name in objectives)]


def pareto_figure(trials: Sequence[Mapping], pareto: Mapping) -> Figure | None:
    """Objective 1 (x) against objective 2 (y), one point per scored trial, labelled with its
    trial number; the front's points joined in order of x, the picked one a red star. None
    without scored trials."""
    first, second = pareto["objectives"][:2]
    points = scored_trials(trials, (first, second))
    if not points:
        return None
    front = set(pareto.get("front") or ())
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    on_front = sorted(
        (t for t in points if t.get("trial") in front), key=lambda t: metric_of(t, first)
    )
    others = [t for t in points if t.get("trial") not in front]
    if others:
        ax.scatter(*_xy(others, first, second), s=30, color=_OTHER, label="trial (dominated)")
    if on_front:
        x, y = _xy(on_front, first, second)
        ax.plot(x, y, "-o", color=_FRONT, ms=6, lw=1.6, label="Pareto front", zorder=2)
    picked = [t for t in points if t.get("trial") == pareto.get("picked")]
    if picked:
        ax.scatter(*_xy(picked, first, second), s=260, marker="*", color=_PICKED, zorder=3)
        ax.scatter([], [], s=120, marker="*", color=_PICKED, label="picked (retrained)")
    for trial in points:
        ax.annotate(
            _label(trial),
            (metric_of(trial, first), metric_of(trial, second)),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=7.5,
        )
    modes = list(pareto.get("modes") or ("max", "max"))
    ax.set_xlabel(f"{first} ({_better(modes[0])} is better)")
    ax.set_ylabel(f"{second} ({_better(modes[1])} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def pareto_table(trials: Sequence[Mapping], pareto: Mapping) -> str:
    """One row per scored trial, front first (in order of the first objective), the picked one
    highlighted: its point label, on front, both objectives, every sampled hyperparameter, and
    the trial's full name."""
    first, second = pareto["objectives"][:2]
    front = set(pareto.get("front") or ())
    sign = -1.0 if (pareto.get("modes") or ["max"])[0] == "max" else 1.0
    rows = sorted(
        scored_trials(trials, (first, second)),
        key=lambda t: (t.get("trial") not in front, sign * metric_of(t, first)),
    )
    params = list(dict.fromkeys(k for t in rows for k in (t.get("config") or {})))
    header = ["point", "on front", first, second, *params, "trial"]
    body = [
        [
            _label(t),
            "yes" if t.get("trial") in front else "no",
            t.get(first),
            t.get(second),
            *((t.get("config") or {}).get(p, "") for p in params),
            str(t.get("trial")) + (" (picked)" if t.get("trial") == pareto.get("picked") else ""),
        ]
        for t in rows
    ]
    picked = {i for i, t in enumerate(rows) if t.get("trial") == pareto.get("picked")}
    return markup.table(header, body, highlight=picked)


def pick_sentence(pareto: Mapping) -> str:
    """How the retrained point was chosen, in one sentence."""
    first, second = pareto["objectives"][:2]
    rule = str(pareto.get("pick"))
    if rule in _RULES:
        text = _RULES[rule].format(first=first, second=second, within=pareto.get("pick_within"))
    else:
        text = f"the front point best on {rule}"
    return f"The retrained trial ({pareto.get('picked')}) is {text} (search.pick={rule})."


def _xy(trials: Sequence[Mapping], first: str, second: str) -> tuple[list, list]:
    return [metric_of(t, first) for t in trials], [metric_of(t, second) for t in trials]


def _label(trial: Mapping) -> str:
    """The trial's index in its Tune folder name (``fit_trial_32443c87_1_...``: ``1``), else
    its whole name."""
    name = str(trial.get("trial", "?"))
    match = _TRIAL_INDEX.search(name)
    return match.group(1) if match else name


def _better(mode: str) -> str:
    return "lower" if mode == "min" else "higher"
