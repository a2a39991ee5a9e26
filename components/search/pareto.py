"""The Pareto front of a two-objective sweep, and the rule that picks the point retrained.

A point dominates another when it is at least as good on every objective and better on one;
the front is the set of points no other point dominates (equal points are all on it).
``search.pick`` chooses one front point:

* ``knee``: each objective min-max scaled over the front to [0, 1] (1 = the front's best), the
  point nearest the utopia point (1, 1) in Euclidean distance: the most balanced trade-off;
* ``within``: the point best on the second objective among those whose first objective lies
  within ``pick_within`` (in its own units, e.g. 0.01 accuracy) of the front's best first
  objective: "the most interpretable model that gives up at most this much accuracy";
* an objective's name: the point best on that objective alone.

Ties go to the point better on the first objective, then to the earlier one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

RULES = ("knee", "within")


def pareto_front(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices (ascending) of the non-dominated ``points``; ``modes[j]`` is ``min`` or ``max``
    for objective ``j``."""
    signed = [_signed(p, modes) for p in points]
    return [
        i
        for i, p in enumerate(signed)
        if not any(_dominates(q, p) for j, q in enumerate(signed) if j != i)
    ]


def pick(
    points: Sequence[Sequence[float]],
    modes: Sequence[str],
    rule: str,
    *,
    names: Sequence[str] = (),
    within: float = 0.0,
) -> int:
    """The index of the front point ``rule`` chooses (see the module docstring).

    Args:
        points: the trials' objective values, one row per trial.
        modes: ``min`` / ``max`` per objective.
        rule: ``knee``, ``within``, or one of ``names``.
        names: the objectives' names (for a rule naming one).
        within: ``within``: how far below the best first objective a point may lie.

    Raises:
        ValueError: no points, or an unknown rule.
    """
    if not points:
        raise ValueError("no points to pick from")
    front = pareto_front(points, modes)
    signed = {i: _signed(points[i], modes) for i in front}
    if rule == "knee":
        score = _knee_distances(signed)
    elif rule == "within":
        best_first = max(p[0] for p in signed.values())
        near = {i: p for i, p in signed.items() if p[0] >= best_first - within - 1e-12}
        score = {i: -p[1] for i, p in near.items()}
    elif rule in names:
        column = list(names).index(rule)
        score = {i: -p[column] for i, p in signed.items()}
    else:
        raise ValueError(f"unknown pick rule {rule!r}: use one of {[*RULES, *names]}")
    return min(score, key=lambda i: (score[i], -signed[i][0], i))


def _knee_distances(signed: dict[int, tuple[float, ...]]) -> dict[int, float]:
    """Distance of each point to the utopia point after min-max scaling over ``signed``."""
    columns = list(zip(*signed.values(), strict=True))
    low, high = [min(c) for c in columns], [max(c) for c in columns]

    def scaled(value: float, j: int) -> float:
        span = high[j] - low[j]
        return 1.0 if span == 0 else (value - low[j]) / span

    return {
        i: math.dist([scaled(v, j) for j, v in enumerate(p)], [1.0] * len(p))
        for i, p in signed.items()
    }


def _signed(point: Sequence[float], modes: Sequence[str]) -> tuple[float, ...]:
    """The point with every objective turned into one to maximise."""
    return tuple(float(v) if m == "max" else -float(v) for v, m in zip(point, modes, strict=True))


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True)
    )
