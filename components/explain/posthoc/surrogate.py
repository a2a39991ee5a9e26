"""A global surrogate for high-dimensional inputs: probe the black box, keep its top-k features,
fit an interpretable model that mimics it.

Karim et al., "Interpreting Black-box Machine Learning Models for High Dimensional Datasets"
(in ``reference/papers.txt``): rank features by probing / perturbing the black box, approximate
it with an interpretable surrogate on the top-k features, and read decision rules from it. Here
a feature's importance is the mean absolute change of the predicted-class probability when the
feature is perturbed, either *removed* through the shared removal operator (Occlusion) or
*permuted* across samples (permutation importance, Breiman 2001); the surrogate is a decision tree
or an L1 (sparse) logistic regression trained on the black box's predicted labels, and its
fidelity is its agreement with the black box on held-out inputs.

A feature is one element of the input, or with ``groups`` one group shared by all inputs (the
patches of :func:`~components.perturbation.groups.feature_groups`): probing then costs one
model call per group and probe (64 patches of a 224x224 image instead of its 150,528 values), and
the surrogate reads each selected patch's mean value. Per-input groups (superpixels) cannot be
global features: they mean a different region in every image.

The rules name features and classes as the data does and, given each feature's normalisation
statistics, are written in the data's own units (``income <= 60541.5`` rather than a
standardised ``x[1] <= 0.85``): the surrogate is fitted on what the model takes, and only its
text is converted, exactly (a tree's thresholds, a linear model's weights and bias). A tree's
split on the 0/1 feature of a one-hot encoded category reads ``work class is Private`` / ``work
class is not Private`` rather than ``work class=Private > 0.50``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sklearn
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier, export_text
from torch import nn

from components.evaluation.predict import eval_mode, model_logits, predict_logits
from components.explain.posthoc.lfa import group_occlusion
from components.perturbation.groups import as_labels, group_sizes, group_sums, num_groups
from components.perturbation.removal import rows_per_call
from components.tensors import as_float_tensor, model_device

KINDS = ("tree", "sparse_linear")
IMPORTANCES = ("removal", "permutation")


@dataclass(frozen=True)
class GlobalSurrogate:
    """An interpretable model fitted to mimic a black box on its top-k features.

    Attributes:
        kind: ``tree`` or ``sparse_linear``.
        features: The selected features (flattened elements, or groups), most important first.
        feature_names: Their names.
        used: The names of those the fitted surrogate relies on (a tree's splits, a linear
            model's non-zero weights), most important first.
        importance: The black box's importance of every feature.
        fidelity: Share of held-out inputs on which surrogate and black box agree.
        train_fidelity: The same on the inputs the surrogate was fitted on.
        rules: The surrogate as text: the tree's rules, or each class's non-zero weights.
        estimator: The fitted scikit-learn model (takes the selected features).
        groups: The ``(1, *feature_shape)`` group labels when features are groups, else None.
        units: ``data`` when the rules are written in the units ``feature_units`` gave, else
            ``model`` (the values the model takes).
    """

    kind: str
    features: list[int]
    feature_names: list[str]
    used: list[str]
    importance: np.ndarray
    fidelity: float
    train_fidelity: float
    rules: str
    estimator: Any = field(repr=False)
    groups: torch.Tensor | None = field(default=None, repr=False)
    units: str = "model"

    def predict(self, x: Any) -> np.ndarray:
        """The surrogate's class for each input ``(N, *feature_shape)``."""
        return self.estimator.predict(feature_values(x, self.groups)[:, self.features])

    def summary(self) -> dict[str, Any]:
        """What a report shows: kind, fidelity, top-k feature names, those used, and rules."""
        return {
            "kind": self.kind,
            "fidelity": self.fidelity,
            "features": list(self.feature_names),
            "used": list(self.used),
            "rules": self.rules,
            "units": self.units,
            "top_k": len(self.features),
        }


def fit_global_surrogate(
    model: nn.Module,
    x: Any,
    *,
    x_holdout: Any = None,
    top_k: int = 10,
    kind: str = "tree",
    importance: str = "removal",
    max_depth: int = 4,
    l1_strength: float = 1.0,
    feature_names: Sequence[str] | None = None,
    feature_units: tuple[Any, Any] | None = None,
    class_names: Sequence[str] | None = None,
    categorical: Mapping[str, tuple[str, str]] | None = None,
    groups: Any = None,
    holdout_fraction: float = 0.25,
    probe_samples: int = 256,
    replacement: str = "baseline",
    batch_size: int | None = None,
    seed: int = 0,
) -> GlobalSurrogate:
    """Rank features by probing ``model``, keep ``top_k``, fit a surrogate, measure fidelity.

    Args:
        model: The black box; forward returns logits or an object with ``.logits``.
        x: Inputs ``(N, *feature_shape)`` (standardised, as the model takes them).
        x_holdout: Inputs to measure fidelity on; default: ``holdout_fraction`` of ``x``.
        top_k: Features the surrogate may use.
        kind: ``tree`` (a decision tree of ``max_depth``) or ``sparse_linear`` (L1 logistic
            regression with inverse strength ``l1_strength``; smaller is sparser).
        importance: ``removal`` or ``permutation`` (see :func:`feature_importance`).
        feature_names: One per feature; default :func:`default_feature_names`.
        feature_units: ``(mean, std)`` of every flattened feature (not with ``groups``): the
            rules' thresholds and weights are then written for ``value * std + mean``, the
            user's own units when ``x`` is standardised. The fit is unchanged.
        class_names: The name of each class index, for the rules.
        categorical: The 0/1 features that one-hot encode a category, by name (``column=word``
            -> ``(column, word)``): a tree's split on one reads ``column is (not) word``.
        groups: Group labels shared by all inputs (broadcastable to ``feature_shape``): the
            features are then the groups, each read as its mean value. None: every element.
        holdout_fraction: Share of ``x`` held out when ``x_holdout`` is None.
        probe_samples: Training inputs used to rank the features.
        replacement: How ``removal`` replaces a feature (see ``remove_features``).
        batch_size: Rows per model call (default: up to 1,024, fewer for large inputs).
        seed: Seeds the split, the probes and the tree.

    Returns:
        A :class:`GlobalSurrogate`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")
    inputs = as_float_tensor(x).cpu()
    labels = _shared_labels(groups, inputs.shape[1:])
    batch_size = batch_size or rows_per_call(inputs.shape[1:], 1024, model_device(model))
    train, holdout = _split(inputs, x_holdout, holdout_fraction, seed)
    width = inputs[0].numel() if labels is None else num_groups(labels)
    if not 1 <= top_k <= width:
        raise ValueError(f"top_k must lie in [1, {width}], got {top_k}")
    names = list(feature_names or default_feature_names(inputs.shape[1:], labels))
    if len(names) != width:
        raise ValueError(f"feature_names has {len(names)} names for {width} features")
    units = _units(feature_units, width, labels)
    probes = train[torch.randperm(len(train), generator=_generator(seed))[:probe_samples]]
    scores = feature_importance(
        model,
        probes,
        method=importance,
        groups=labels,
        replacement=replacement,
        batch_size=batch_size,
        seed=seed,
    )
    selected = [int(i) for i in np.argsort(-scores, kind="stable")[:top_k]]
    targets = [_labels(model, part, batch_size) for part in (train, holdout)]
    columns = [feature_values(part, labels)[:, selected] for part in (train, holdout)]
    estimator = _estimator(kind, max_depth, l1_strength, seed).fit(columns[0], targets[0])
    chosen = [names[i] for i in selected]
    rules = _rules(estimator, chosen, _selected(units, selected), class_names)
    return GlobalSurrogate(
        kind=kind,
        features=selected,
        feature_names=chosen,
        used=[chosen[j] for j in _used_columns(estimator)],
        importance=scores,
        fidelity=float(np.mean(estimator.predict(columns[1]) == targets[1])),
        train_fidelity=float(np.mean(estimator.predict(columns[0]) == targets[0])),
        rules=_categories_in_words(rules, categorical) if kind == "tree" else rules,
        estimator=estimator,
        groups=labels,
        units="model" if units is None else "data",
    )


def feature_importance(
    model: nn.Module,
    x: Any,
    *,
    method: str = "removal",
    groups: Any = None,
    replacement: str = "baseline",
    batch_size: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Mean ``|change|`` of each input's predicted-class probability when a feature is perturbed.

    ``removal`` replaces the feature through ``remove_features`` (``replacement``); ``permutation``
    gives it the value of another input (a seeded shuffle of ``x``). A feature is an element, or
    a group of ``groups`` (labels shared by all inputs) perturbed as a whole. Every (input,
    feature) pair is one row of a batched model call, as in Occlusion: the cost is
    ``len(x) * number of features`` rows.

    Returns:
        ``(F,)`` importances: one per flattened element, or per group.
    """
    if method not in IMPORTANCES:
        raise ValueError(f"unknown importance {method!r}; one of {IMPORTANCES}")
    inputs = as_float_tensor(x).to(model_device(model))
    batch_size = batch_size or rows_per_call(inputs.shape[1:], 1024, inputs.device)
    predicted = predict_logits(model, inputs, batch_size=batch_size, device=inputs.device).argmax(1)
    baseline, removal = None, {"replacement": replacement}
    if method == "permutation":
        shuffle = torch.randperm(len(inputs), generator=_generator(seed)).to(inputs.device)
        baseline, removal = inputs[shuffle], {"replacement": "baseline"}
    labels = _shared_labels(groups, inputs.shape[1:])
    if labels is None:
        labels = torch.arange(inputs[0].numel()).reshape(1, *inputs.shape[1:])
    with eval_mode(model):
        changes = group_occlusion(
            lambda z: model_logits(model(z)).softmax(1),
            inputs,
            labels.to(inputs.device),
            target=predicted,
            baseline=baseline,
            removal=removal,
            batch_size=batch_size,
            seed=seed,
        )
    return np.abs(changes.cpu().numpy()).mean(0)


def feature_values(x: Any, groups: torch.Tensor | None = None) -> np.ndarray:
    """``(N, F)`` float32: each input's flattened elements, or the mean of each group."""
    inputs = as_float_tensor(x).cpu()
    if groups is None:
        return inputs.reshape(len(inputs), -1).numpy()
    return (group_sums(inputs, groups) / group_sizes(groups)).numpy()


def default_feature_names(
    feature_shape: tuple[int, ...], groups: torch.Tensor | None = None
) -> list[str]:
    """``x[i]`` for flat features, ``x[c,h,w]`` (row-major) otherwise; with ``groups``, each
    group as the box it fills (``x[:,0:28,28:56]``: a patch across channels) or ``group g``."""
    shape = tuple(int(s) for s in feature_shape)
    if groups is None:
        if len(shape) == 1:
            return [f"x[{i}]" for i in range(shape[0])]
        return ["x[" + ",".join(map(str, index)) + "]" for index in np.ndindex(*shape)]
    labels = groups.reshape(shape).numpy()
    return [_group_name(labels == g, g) for g in range(int(labels.max()) + 1)]


def _group_name(members: np.ndarray, group: int) -> str:
    """``x[...]`` for a group that fills a box, ``group g`` otherwise."""
    where = np.argwhere(members)
    low, high = where.min(0), where.max(0)
    if where.shape[0] != np.prod(high - low + 1):
        return f"group {group}"
    axes = [
        str(lo) if lo == hi else (":" if lo == 0 and hi == size - 1 else f"{lo}:{hi + 1}")
        for lo, hi, size in zip(low, high, members.shape, strict=True)
    ]
    return "x[" + ",".join(axes) + "]"


def _shared_labels(groups: Any, feature_shape) -> torch.Tensor | None:
    """``groups`` as ``(1, *feature_shape)`` labels; an error for per-input groups."""
    if groups is None:
        return None
    labels = as_labels(groups, feature_shape)
    if len(labels) != 1:
        raise ValueError(
            "a global surrogate needs groups shared by all inputs (e.g. patches), "
            f"got {len(labels)} per-input masks (e.g. superpixels)"
        )
    return labels


def _split(inputs: torch.Tensor, x_holdout: Any, fraction: float, seed: int):
    if x_holdout is not None:
        return inputs, as_float_tensor(x_holdout, "x_holdout").cpu()
    if not 0 < fraction < 1:
        raise ValueError(f"holdout_fraction must lie in (0, 1), got {fraction}")
    order = torch.randperm(len(inputs), generator=_generator(seed))
    cut = len(inputs) - max(1, round(fraction * len(inputs)))
    if cut < 1:
        raise ValueError(f"need at least 2 inputs to hold some out, got {len(inputs)}")
    return inputs[order[:cut]], inputs[order[cut:]]


def _labels(model: nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    logits = predict_logits(model, x, batch_size=batch_size, device=model_device(model))
    return logits.argmax(1).numpy()


def _estimator(kind: str, max_depth: int, l1_strength: float, seed: int):
    if kind == "tree":
        return DecisionTreeClassifier(max_depth=max_depth, random_state=seed)
    # scikit-learn 1.8 deprecated ``penalty``: ``l1_ratio=1`` alone now asks for pure L1.
    penalty = {} if _sklearn_at_least(1, 8) else {"penalty": "elasticnet"}
    return LogisticRegression(
        C=l1_strength, l1_ratio=1.0, solver="saga", max_iter=2000, random_state=seed, **penalty
    )


def _units(feature_units, width: int, groups) -> tuple[np.ndarray, np.ndarray] | None:
    """``feature_units`` as two ``(width,)`` float arrays, checked."""
    if feature_units is None:
        return None
    if groups is not None:
        raise ValueError("feature_units name the units of single features, not of groups")
    mean, std = (np.asarray(a, dtype=np.float64).ravel() for a in feature_units)
    if mean.shape != (width,) or std.shape != (width,):
        raise ValueError(f"feature_units need {width} means and stds, got {mean.size}, {std.size}")
    return mean, std


def _selected(units, selected: list[int]):
    return None if units is None else (units[0][selected], units[1][selected])


def _rules(
    estimator: Any,
    names: list[str],
    units: tuple[np.ndarray, np.ndarray] | None = None,
    class_names: Sequence[str] | None = None,
) -> str:
    """The fitted surrogate as text, in ``units`` (``value * std + mean``) when given."""
    classes = [_class_name(c, class_names) for c in estimator.classes_]
    if isinstance(estimator, DecisionTreeClassifier):
        return export_text(
            _tree_in_units(estimator, units), feature_names=names, class_names=classes
        )
    rows, biases = estimator.coef_, estimator.intercept_
    if units is not None:  # w * (v - mean) / std = (w / std) * v - w * mean / std
        mean, std = units
        rows, biases = rows / std, biases - (rows * mean / std).sum(axis=1)
    # Two classes: sklearn keeps one weight row, the logit of the second class.
    labels = classes[1:] if len(rows) == 1 else classes
    lines = []
    for label, weights, bias, ranked in zip(labels, rows, biases, estimator.coef_, strict=True):
        # ranked by the fitted weights: per-unit weights of unlike units do not compare
        order = [j for j in np.argsort(-np.abs(ranked), kind="stable") if ranked[j] != 0]
        terms = " ".join(f"{weights[j]:+.3g} * {names[j]}" for j in order)
        lines.append(f"class {label}: {bias:+.3g} {terms}".rstrip())
    return "\n".join(lines)


def _used_columns(estimator: Any) -> list[int]:
    """The input columns the fitted surrogate reads, in column order."""
    if isinstance(estimator, DecisionTreeClassifier):
        split = estimator.tree_.feature
        return sorted({int(j) for j in split[split >= 0]})
    return [int(j) for j in np.flatnonzero(np.any(estimator.coef_ != 0, axis=0))]


def _categories_in_words(rules: str, categorical: Mapping[str, tuple[str, str]] | None) -> str:
    """``export_text`` lines that split a one-hot 0/1 feature, written as ``column is (not)
    word``: the feature takes only two values, so any threshold between them means the same."""
    if not categorical:
        return rules
    lines = []
    for line in rules.splitlines():
        branch, sep, test = line.partition("|--- ")
        condition = test.rsplit(" ", 1)[0].rstrip()  # "name <=" or "name >" before the value
        for operator, verb in ((" <=", "is not"), (" >", "is")):
            name = condition.removesuffix(operator)
            if sep and condition.endswith(operator) and name in categorical:
                column, word = categorical[name]
                line = f"{branch}{sep}{column} {verb} {word}"
                break
        lines.append(line)
    return "\n".join(lines) + ("\n" if rules.endswith("\n") else "")


def _class_name(label, class_names: Sequence[str] | None) -> str:
    index = int(label)
    return str(class_names[index]) if class_names and 0 <= index < len(class_names) else str(index)


def _tree_in_units(tree: DecisionTreeClassifier, units) -> DecisionTreeClassifier:
    """A copy of ``tree`` whose thresholds are in ``units`` (for its text only)."""
    if units is None:
        return tree
    shown = copy.deepcopy(tree)
    split = shown.tree_.feature >= 0  # leaves have feature -2
    feature = shown.tree_.feature[split]
    shown.tree_.threshold[split] = (
        shown.tree_.threshold[split] * units[1][feature] + units[0][feature]
    )
    return shown


def _sklearn_at_least(major: int, minor: int) -> bool:
    version = tuple(int(part) for part in sklearn.__version__.split(".")[:2])
    return version >= (major, minor)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
