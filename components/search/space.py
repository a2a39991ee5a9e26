"""Search spaces declared as plain data (from Hydra config) and turned into Ray Tune domains.

A space maps a hyperparameter name to a spec: ``{"type": "loguniform", "low": 1e-4, "high": 1e-1}``,
``{"type": "uniform", ...}``, ``{"type": "randint", "low": 1, "high": 4}`` or
``{"type": "choice", "values": [...]}``. Names are ``train.<field>`` (a :class:`TrainConfig`
field), ``model.<kwarg>`` (a model keyword argument), ``stn.<field>`` (an
:class:`~components.search.stn.STNConfig` field: the starting point of a Self-Tuning Network) or
``darts.<field>`` (a :class:`~components.search.darts.DartsConfig` field, or ``num_candidates``)
or ``prune.<field>`` (a :class:`~components.pruning.imp_config.PruneConfig` field, e.g. the
pruning rate ``prune.rate``).
A nested mapping (``{"train": {"lr": {...}}}``, as Hydra config holds it) is flattened first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace

from ray import tune

from components.pruning.imp_config import PruneConfig
from components.search.darts import DartsConfig
from components.search.stn import STNConfig
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig

_BUILDERS = {
    "uniform": lambda s: tune.uniform(s["low"], s["high"]),
    "loguniform": lambda s: tune.loguniform(s["low"], s["high"]),
    "randint": lambda s: tune.randint(s["low"], s["high"]),
    "choice": lambda s: tune.choice(list(s["values"])),
}


def flatten_space(space: Mapping[str, Mapping]) -> dict[str, Mapping]:
    """``{"train": {"lr": spec}}`` -> ``{"train.lr": spec}`` (flat names pass through)."""
    flat: dict[str, Mapping] = {}
    for name, value in space.items():
        if "." in name or "type" in value:
            flat[name] = value
        else:
            flat |= {f"{name}.{key}": spec for key, spec in flatten_space(value).items()}
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
            domains[name] = _BUILDERS[kind](spec)
        except KeyError as err:
            raise ValueError(f"search space {name!r}: missing {err.args[0]!r}") from err
    return domains


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


def _check_name(name: str) -> None:
    group, _, key = name.partition(".")
    known = {
        "train": TrainConfig.field_names(),
        "stn": [f.name for f in fields(STNConfig)],
        "darts": [f.name for f in fields(DartsConfig)] + ["num_candidates"],
        "prune": PruneConfig.field_names(),
    }
    if (group == "model" and key) or key in known.get(group, ()):
        return
    if group in known:
        raise ValueError(
            f"search space key {name!r}: {group}.<field> must be one of {known[group]}"
        )
    raise ValueError(
        f"search space key {name!r}: use train.<field>, model.<keyword argument>, "
        "stn.<field>, darts.<field> or prune.<field>"
    )
