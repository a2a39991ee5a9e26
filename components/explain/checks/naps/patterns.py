"""Neural activation patterns (NAPs, Geng et al. 2023, "Towards reliable neural
specifications"): per-class patterns of ReLU on/off states mined with the paper's statistical
(delta-relaxed) rule, and what they are checked for: recall, exclusivity and the property that
no input satisfying class c's NAP is predicted as another class.

A pattern is an int8 vector over a layer's neurons: :data:`ACTIVE`, :data:`INACTIVE` or
:data:`FREE` (unconstrained). Everything here is plain numpy over boolean activity matrices
(``(N, K)``: neuron k of input n is active), so it is exact and cheap to test.
"""

from __future__ import annotations

import itertools

import numpy as np

ACTIVE, FREE, INACTIVE = 1, 0, -1


def mine_patterns(
    activity: np.ndarray, labels: np.ndarray, num_classes: int, delta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each class's delta-relaxed NAP: neuron k is ACTIVE (INACTIVE) in class c's pattern when
    it is active (inactive) on at least ``delta`` of class c's inputs, else FREE.

    Args:
        activity: ``(N, K)`` bool, the mining inputs' neuron states.
        labels: ``(N,)`` their classes.
        num_classes: number of classes C.
        delta: the share, in (0.5, 1] (1: the neuron never flips within the class).

    Returns:
        ``(C, K)`` int8 patterns and ``(C,)`` the number of inputs each was mined from (a class
        with none has an all-FREE pattern that :func:`satisfaction` treats as undefined).
    """
    activity, labels = np.asarray(activity, bool), np.asarray(labels)
    patterns = np.full((num_classes, activity.shape[1]), FREE, np.int8)
    counts = np.bincount(labels, minlength=num_classes)[:num_classes]
    for c in np.flatnonzero(counts):
        rows = activity[labels == c]
        needed = np.ceil(delta * len(rows) - 1e-9)  # delta * n inputs, robust to float rounding
        on = rows.sum(axis=0)
        patterns[c, on >= needed] = ACTIVE
        patterns[c, len(rows) - on >= needed] = INACTIVE
    return patterns, counts


def satisfaction(activity: np.ndarray, patterns: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``(N, C)`` bool: input n satisfies class c's NAP (every ACTIVE neuron on, every INACTIVE
    neuron off); False for a class whose pattern was mined from no input."""
    activity = np.asarray(activity, bool)
    sat = np.zeros((len(activity), len(patterns)), bool)
    for c in np.flatnonzero(counts):
        on, off = patterns[c] == ACTIVE, patterns[c] == INACTIVE
        sat[:, c] = activity[:, on].all(axis=1) & ~activity[:, off].any(axis=1)
    return sat


def conflicts(first: np.ndarray, second: np.ndarray) -> bool:
    """True when no input can satisfy both patterns: a neuron is ACTIVE in one and INACTIVE in
    the other (the paper's syntactic exclusivity; without it only a verifier can decide)."""
    return bool(np.any(first.astype(int) * second.astype(int) == ACTIVE * INACTIVE))


def non_exclusive_pairs(patterns: np.ndarray, counts: np.ndarray) -> list[tuple[int, int]]:
    """Class pairs ``(a, b)``, ``a < b``, whose NAPs do not conflict on any neuron (exclusivity
    not shown), among classes with a mined pattern."""
    classes = np.flatnonzero(counts)
    return [
        (int(a), int(b))
        for a, b in itertools.combinations(classes, 2)
        if not conflicts(patterns[a], patterns[b])
    ]


def pattern_checks(sat: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> dict:
    """Per class, on held-out inputs: ``recall`` (share of its inputs that satisfy its NAP),
    ``satisfied`` (inputs of any class that do), ``precision`` (share of those labelled c) and
    ``violations`` (inputs that satisfy it yet are predicted as another class); and
    ``coverage``: the share of all inputs that satisfy their own class's NAP.

    An input that satisfies two NAPs is a violation of at least one of them (it has one
    prediction), so a witnessed overlap always shows as a violation.
    """
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    classes = np.arange(sat.shape[1])
    of_class = labels[:, None] == classes[None, :]
    support = of_class.sum(axis=0)
    satisfied = sat.sum(axis=0)
    return {
        "support": support.tolist(),
        "recall": _ratio((sat & of_class).sum(axis=0), support),
        "satisfied": satisfied.tolist(),
        "precision": _ratio((sat & of_class).sum(axis=0), satisfied),
        "violations": (sat & (predicted[:, None] != classes[None, :])).sum(axis=0).tolist(),
        "coverage": float(sat[np.arange(len(labels)), labels].mean()) if len(labels) else None,
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> list[float | None]:
    return [float(n / d) if d else None for n, d in zip(numerator, denominator, strict=True)]
