"""Search spaces declared as plain data (from Hydra config) and turned into Ray Tune domains.

A space maps a hyperparameter name to a spec: ``{"type": "loguniform", "low": 1e-4, "high": 1e-1}``,
``{"type": "uniform", ...}``, ``{"type": "randint", "low": 1, "high": 4}`` or
``{"type": "choice", "values": [...]}``. Names are ``train.<field>`` (a :class:`TrainConfig`
field), ``model.<kwarg>`` (a model keyword argument), ``stn.<field>`` (an
:class:`~components.search.stn.STNConfig` field: the starting point of a Self-Tuning Network) or
``darts.<field>`` (a :class:`~components.search.darts.DartsConfig` field, or ``num_candidates``)
or ``ssl.<field>`` (an :class:`~components.ssl.config.SSLConfig` field of :data:`SSL_KEYS`, e.g.
``ssl.projector_width``: each trial pre-trains its encoder with its values first, see
:func:`check_ssl_search`) or ``prune.<field>`` (a
:class:`~components.pruning.imp_config.PruneConfig` field of :data:`PRUNE_KEYS`, e.g.
``prune.rate``: each trial runs lottery-ticket rounds with its values, see
:func:`check_prune_search`). A nested mapping (``{"train": {"lr": {...}}}``, as Hydra config
holds it) is flattened first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace

from ray import tune

from components.pruning.imp_config import PruneConfig
from components.search.bossnas import BossNASConfig
from components.search.darts import DartsConfig
from components.search.enas import EnasConfig
from components.search.stn import STNConfig
from components.search.sweep_config import HYPERPARAMETER_METHODS, IN_MEMORY_METHODS
from components.ssl.config import SSLConfig
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig

_BUILDERS = {
    "uniform": lambda s: tune.uniform(s["low"], s["high"]),
    "loguniform": lambda s: tune.loguniform(s["low"], s["high"]),
    "randint": lambda s: tune.randint(s["low"], s["high"]),
    "choice": lambda s: tune.choice(list(s["values"])),
}


def flatten_space(space: Mapping[str, Mapping], prefix: str = "") -> dict[str, Mapping]:
    """``{"train": {"lr": spec}}`` -> ``{"train.lr": spec}`` (flat names pass through);
    ``ValueError`` for an entry that is no mapping (a fixed value where a spec belongs)."""
    flat: dict[str, Mapping] = {}
    for name, value in space.items():
        full = f"{prefix}{name}"
        if not isinstance(value, Mapping):
            fixed = f"; to fix it for every trial, set {full}={value}" if "." in full else ""
            raise ValueError(
                f"search space {full!r}: expected a spec such as {{type: loguniform, low: 1e-4, "
                f"high: 0.1}} or {{type: choice, values: [...]}}, got {value!r}{fixed}"
            )
        if "." in name or "type" in value:
            flat[full] = value
        else:
            flat |= flatten_space(value, f"{full}.")
    return flat


def tune_space(space: Mapping[str, Mapping]) -> dict:
    """Ray Tune domains for ``space``; ``ValueError`` names a bad entry."""
    domains = {}
    for name, spec in flatten_space(space).items():
        _check_name(name)
        kind = spec.get("type")
        if kind not in _BUILDERS:
            raise ValueError(
                f"search space {name!r}: type {kind!r} is not one of {list(_BUILDERS)}"
            )
        try:
            _check_bounds(name, kind, spec)
            domains[name] = _BUILDERS[kind](spec)
        except KeyError as err:
            raise ValueError(f"search space {name!r}: missing {err.args[0]!r}") from err
    return domains


def _check_bounds(name: str, kind: str, spec: Mapping) -> None:
    """A range needs numbers ``low < high`` (integers for ``randint``, ``low > 0`` for
    ``loguniform``); a choice needs a non-empty list."""
    if kind == "choice":
        values = spec["values"]
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"search space {name!r}: choice needs a non-empty list of values")
        return
    low, high = spec["low"], spec["high"]
    number = int if kind == "randint" else (int, float)
    for bound, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, number):
            wanted = "an integer" if kind == "randint" else "a number"
            raise ValueError(f"search space {name!r}: {bound} must be {wanted}, got {value!r}")
    if low >= high:
        hint = " (high is excluded: randint draws low..high-1)" if kind == "randint" else ""
        raise ValueError(f"search space {name!r}: needs low < high, got {low} and {high}{hint}")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"search space {name!r}: loguniform needs low > 0, got {low}")


def check_space_values(space: Mapping, train: TrainConfig, spec: ModelSpec | None) -> None:
    """``ValueError`` naming the dimension and the value when a value that a ``train.*`` or
    ``model.*`` dimension can draw is refused by the settings it applies to, before any trial
    runs: a range's ends and every choice are tried, one dimension at a time, the others at
    their configured values (the model is built, without pretrained weights). ``spec``: the
    model the trials train; None skips ``model.*`` (methods that train networks of their
    own)."""
    for name, dimension in flatten_space(space).items():
        group = name.partition(".")[0]
        if group not in ("train", "model") or (group == "model" and spec is None):
            continue
        for value in _drawable(dimension):
            try:
                if group == "train":
                    apply_train_overrides(train, {name: value})
                else:
                    apply_model_overrides(spec, {name: value}).build(load_pretrained=False)
            except (ValueError, TypeError) as err:  # ModelSpecError is a ValueError
                message = f"search space {name!r} can draw {value!r}, refused: {err}"
                raise ValueError(message) from err


def _drawable(dimension: Mapping) -> list:
    """The extreme values a dimension can draw: every choice, a range's ends (Tune excludes
    ``high``: the float below it, or ``high - 1`` for ``randint``)."""
    kind = dimension["type"]
    if kind == "choice":
        return list(dimension["values"])
    low, high = dimension["low"], dimension["high"]
    return [low, high - 1 if kind == "randint" else math.nextafter(high, low)]


def group_overrides(config: Mapping, group: str) -> dict:
    """The values of a sampled trial config that belong to ``group`` (``train``, ``model``...)."""
    prefix = f"{group}."
    return {k.removeprefix(prefix): v for k, v in config.items() if k.startswith(prefix)}


def apply_train_overrides(train: TrainConfig, config: Mapping) -> TrainConfig:
    """``train`` with a trial config's ``train.*`` values (validated as any TrainConfig);
    ``train.pskd.alpha_T`` sets one key of a nested block."""
    return train.with_overrides(group_overrides(config, "train"))


def apply_model_overrides(spec: ModelSpec, config: Mapping) -> ModelSpec:
    """``spec`` with a trial config's ``model.*`` values added to its keyword arguments."""
    return replace(spec, kwargs={**spec.kwargs, **group_overrides(config, "model")})


def apply_ssl_overrides(ssl: SSLConfig, config: Mapping) -> SSLConfig:
    """``ssl`` with a trial config's ``ssl.*`` values (validated as any SSLConfig)."""
    return replace(ssl, **group_overrides(config, "ssl"))


def apply_prune_overrides(prune: PruneConfig, config: Mapping) -> PruneConfig:
    """``prune`` with a trial config's ``prune.*`` values (validated as any PruneConfig)."""
    return replace(prune, **group_overrides(config, "prune"))


# SSLConfig fields a trial's in-process pre-training uses (not num_workers: a trial pre-trains in
# its own process; not probe_samples: trials run no probes; not views: a nested block).
SSL_KEYS = tuple(
    f.name for f in fields(SSLConfig) if f.name not in ("num_workers", "probe_samples", "views")
)
# PruneConfig fields a trial may vary: not rounds (every trial's budget, ASHA's max_t), method,
# control (trials train no controls) or seed (the sweep's).
PRUNE_KEYS = ("rate", "conv_rate", "output_rate", "scope", "rewind_epoch")
# Population methods perturb values mid-training, after a trial has pre-trained.
_PERTURBING = ("pbt", "pb2")


def check_ssl_search(space: Mapping, method: str, ssl_chosen: bool, num_workers: int) -> None:
    """``ValueError`` unless a sweep's pre-training (an ``ssl=`` group) and its ``ssl.*``
    dimensions take effect: the dimensions need the group; with the group, each trial must run
    the fit loop in its own process (not ``stn``, ``darts``, ``random_ws``, which train networks
    of their own; ``train.num_workers=1``), and the dimensions need a method that does not
    perturb values mid-training (``pbt`` / ``pb2`` would change a value pre-training has used)."""
    names = [name for name in flatten_space(space) if name.partition(".")[0] == "ssl"]
    where = f"search space {', '.join(names)}" if names else "ssl=<objective>"
    if names and not ssl_chosen:
        raise ValueError(
            f"{where}: ssl.* dimensions need an ssl=<objective> group "
            "(barlow_twins, directpred or jepa) to pre-train with"
        )
    if not ssl_chosen:
        return
    if method in IN_MEMORY_METHODS or (names and method in _PERTURBING):
        allowed = [m for m in HYPERPARAMETER_METHODS if not names or m not in _PERTURBING]
        raise ValueError(
            f"{where}: search.method={method} does not pre-train its trials' encoders; "
            f"use one of {', '.join(allowed)}"
        )
    if num_workers > 1:
        raise ValueError(
            f"{where}: a pre-training sweep needs train.num_workers=1 (each trial pre-trains "
            f"in its own process), got {num_workers}"
        )


def check_prune_search(
    space: Mapping, sweep, prune_chosen: bool, ssl_chosen: bool, num_workers: int
) -> None:
    """``ValueError`` unless a pruning sweep's dimensions and ranking take effect: ``prune.*``
    dimensions and the ``remaining`` metric need a ``prune=`` group; with the group, each trial
    runs its lottery rounds in its own process (``train.num_workers=1``; not ``stn``,
    ``darts``, ``random_ws``, which train networks of their own; not ``pbt`` / ``pb2``, whose
    exploits would continue another trial's rounds at other values), without an ``ssl=`` group.
    ``sweep`` is the :class:`~components.search.sweep_config.SweepConfig`."""
    names = [name for name in flatten_space(space) if name.partition(".")[0] == "prune"]
    names += [name for name, _ in sweep.selection if name == "remaining"]
    where = ", ".join(names) if names else "prune=default"
    if names and not prune_chosen:
        raise ValueError(f"{where}: pruning dimensions and metrics need a prune=default group")
    if not prune_chosen:
        return
    if sweep.method in (*IN_MEMORY_METHODS, *_PERTURBING):
        allowed = [m for m in HYPERPARAMETER_METHODS if m not in _PERTURBING]
        raise ValueError(
            f"{where}: search.method={sweep.method} does not run lottery rounds in its trials; "
            f"use one of {', '.join(allowed)}"
        )
    if num_workers > 1:
        raise ValueError(
            f"{where}: a pruning sweep needs train.num_workers=1 (each trial runs its rounds "
            f"in its own process), got {num_workers}"
        )
    if ssl_chosen:
        raise ValueError(f"{where}: a sweep either prunes or pre-trains (ssl=), not both")


def _check_name(name: str) -> None:
    group, _, key = name.partition(".")
    known = {
        "train": TrainConfig.field_names(),
        "stn": [f.name for f in fields(STNConfig)],
        "darts": [f.name for f in fields(DartsConfig)] + ["num_candidates"],
        "enas": EnasConfig.field_names(),
        "bossnas": [f.name for f in fields(BossNASConfig)],
        "ssl": list(SSL_KEYS),
        "prune": list(PRUNE_KEYS),
    }
    if (group == "model" and key) or key in known.get(group, ()):
        return
    if group in known:
        raise ValueError(
            f"search space key {name!r}: {group}.<field> must be one of {known[group]}"
        )
    raise ValueError(
        f"search space key {name!r}: use train.<field>, model.<keyword argument>, "
        "stn.<field>, darts.<field>, enas.<field>, bossnas.<field>, ssl.<field> or prune.<field>"
    )
