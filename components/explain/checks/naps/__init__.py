"""Trust check ``naps``: neural activation patterns as specifications (Geng, Le, Xu, Wang,
Gurfinkel, Si, "Towards reliable neural specifications", ICML 2023).

For one ReLU layer (``explain.naps.layer``; default the model's last ``nn.ReLU`` module, the
last hidden layer of ``mlp``; ``all``: every ReLU module's neurons together, as the reference
code's MNIST patterns span all hidden layers) each class's NAP is mined with the paper's
statistical rule: a neuron is fixed active (inactive) in class c's pattern when it is active
(inactive) on at least a ``delta`` share of class c's training inputs (``explain.naps.delta``;
0.99, the reference code's ``mnist_relu_patterns_0.01`` files). As in the reference code
(github.com/nhamlv-55/VerifyNNE, ``MNIST_extract_RELU_patterns.ipynb``: ``ONLY_CORRECT_PRED``)
only training inputs the model classifies correctly are mined. On the test split it reports
each NAP's recall, the share of test inputs covered (the paper: 84% on MNIST), exclusivity
(pairs whose NAPs conflict on a neuron, the first test of ``check_definitive.py``) and the
property check: test inputs that satisfy class c's NAP yet are predicted as another class.

Departure: no SMT/MILP verifier (the paper uses Marabou). Exclusivity is shown only
syntactically, and the property is checked on the test inputs, not proven over the whole NAP
region; pairs without a conflicting neuron are listed as "not shown exclusive". A model without
an ``nn.ReLU`` module (or a shared ReLU module run twice per forward) gets the verdict "not
applicable: why" at run time, since the model is unknown when the config is validated.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from torch import nn

from components.data.reader import read_split
from components.explain.checks.naps.layers import layer_activity, relu_layers
from components.explain.checks.naps.patterns import (
    ACTIVE,
    INACTIVE,
    mine_patterns,
    non_exclusive_pairs,
    pattern_checks,
    satisfaction,
)
from components.explain.checks.runner import CheckContext

DEFAULTS = {"layer": None, "delta": 0.99, "max_rows": 10000}


def validate(settings: dict) -> None:
    """``ValueError`` naming ``explain.naps.<key>`` for an unknown key or a bad value."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"explain.naps.{unknown[0]}: unknown key; the keys are {list(DEFAULTS)}")
    s = {**DEFAULTS, **settings}
    if s["layer"] is not None and (not isinstance(s["layer"], str) or not s["layer"]):
        raise ValueError(
            f"explain.naps.layer={s['layer']!r}: a ReLU module's name (e.g. net.5), all or null"
        )
    delta = s["delta"]
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0.5 < delta <= 1:
        raise ValueError(
            f"explain.naps.delta={delta!r}: a share in (0.5, 1] (at or below 0.5 a neuron "
            "could be both active and inactive in one pattern)"
        )
    rows = s["max_rows"]
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"explain.naps.max_rows={rows!r}: a positive integer")


def run(context: CheckContext) -> dict:
    """Mine the NAPs on the train split and check them on the test split."""
    s = {**DEFAULTS, **dict(context.settings)}
    rows = s["max_rows"]
    x_train, y_train = read_split(context.dataset_path, "train", limit=rows)
    x_test, y_test = read_split(context.dataset_path, "test", limit=rows)
    result = analyse(
        context.model, (x_train, y_train), (x_test, y_test), layer=s["layer"], delta=s["delta"]
    )
    result["class_names"] = list(context.meta.class_names)
    return result


def analyse(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    layer: str | None = None,
    delta: float = 0.99,
) -> dict:
    """The check's result for ``model`` on ``(x, y)`` train and test arrays.

    Returns:
        ``verdict``, ``summary``, ``applicable``; when applicable also ``layer`` (the ReLU
        module's name; ``all``: every ReLU module's, joined by ``+``), ``delta``,
        ``patterns`` (``(C, K)`` int8), ``mined_from`` (correctly classified training inputs
        per class), ``non_exclusive`` (class pairs) and :func:`pattern_checks`' lists.
    """
    layers = relu_layers(model)
    if not layers:
        return _not_applicable("the model has no nn.ReLU layer, so it has no activation pattern")
    layer = layer or layers[-1]
    if layer != "all" and layer not in layers:
        return _not_applicable(f"explain.naps.layer={layer!r} is not one of its ReLUs {layers}")
    chosen = layers if layer == "all" else [layer]
    try:
        train_activity, train_pred = layer_activity(model, chosen, train[0])
        test_activity, test_pred = layer_activity(model, chosen, test[0])
    except ValueError as error:
        return _not_applicable(str(error))
    num_classes = int(max(train[1].max(initial=0), test[1].max(initial=0))) + 1
    correct = train_pred == train[1]
    patterns, counts = mine_patterns(train_activity[correct], train[1][correct], num_classes, delta)
    checks = pattern_checks(satisfaction(test_activity, patterns, counts), test[1], test_pred)
    result = {
        "applicable": True,
        "layer": "+".join(chosen),
        "delta": float(delta),
        "neurons": int(patterns.shape[1]),
        "patterns": patterns,
        "mined_from": counts.tolist(),
        "non_exclusive": non_exclusive_pairs(patterns, counts),
        "pairs": int(np.count_nonzero(counts)) * (int(np.count_nonzero(counts)) - 1) // 2,
        "test_inputs": len(test[1]),
        **checks,
    }
    result["summary"] = _summary(result)
    result["verdict"] = _verdict(result)
    return result


def _summary(r: Mapping) -> dict:
    return {
        "applicable": True,
        "layer": r["layer"],
        "delta": r["delta"],
        "neurons": r["neurons"],
        "coverage": r["coverage"],
        "violations": int(sum(r["violations"])),
        "pairs": r["pairs"],
        "non_exclusive_pairs": len(r["non_exclusive"]),
        "recall": r["recall"],
        "fixed_active": (r["patterns"] == ACTIVE).sum(axis=1).tolist(),
        "fixed_inactive": (r["patterns"] == INACTIVE).sum(axis=1).tolist(),
    }


def _verdict(r: Mapping) -> str:
    violations = int(sum(r["violations"]))
    coverage = "n/a" if r["coverage"] is None else f"{100 * r['coverage']:.1f}%"
    exclusive = r["pairs"] - len(r["non_exclusive"])
    return (
        f"{'pass' if violations == 0 else 'flag'}: the NAPs of {r['layer']} "
        f"({r['neurons']} neurons, delta={r['delta']:g}) cover {coverage} of "
        f"{r['test_inputs']} test inputs (paper: 84% on MNIST); {violations} test inputs "
        f"satisfy a class's NAP yet are predicted as another class; {exclusive} of "
        f"{r['pairs']} class pairs exclusive (a conflicting neuron)"
    )


def _not_applicable(why: str) -> dict:
    return {
        "applicable": False,
        "verdict": f"not applicable: {why}",
        "summary": {"applicable": False, "reason": why},
    }
