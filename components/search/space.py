"""Search spaces declared as plain data (from Hydra config) and turned into Ray Tune domains.

A space maps a hyperparameter name to a spec: ``{"type": "loguniform", "low": 1e-4, "high": 1e-1}``,
``{"type": "uniform", ...}``, ``{"type": "randint", "low": 1, "high": 4}`` or
``{"type": "choice", "values": [...]}``. Names are ``train.<field>`` (a :class:`TrainConfig`
field) or ``model.<kwarg>`` (a model keyword argument).
"""

from __future__ import annotations

from collections.abc import Mapping

from ray import tune

from components.training.config import TrainConfig

_BUILDERS = {
    "uniform": lambda s: tune.uniform(s["low"], s["high"]),
    "loguniform": lambda s: tune.loguniform(s["low"], s["high"]),
    "randint": lambda s: tune.randint(s["low"], s["high"]),
    "choice": lambda s: tune.choice(list(s["values"])),
}


def tune_space(space: Mapping[str, Mapping]) -> dict:
    """Ray Tune domains for ``space``; ``ValueError`` names a bad entry."""
    domains = {}
    for name, spec in space.items():
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


def split_trial_config(config: Mapping) -> tuple[dict, dict]:
    """A sampled trial config as (TrainConfig overrides, model keyword arguments)."""
    train = {k.removeprefix("train."): v for k, v in config.items() if k.startswith("train.")}
    model = {k.removeprefix("model."): v for k, v in config.items() if k.startswith("model.")}
    return train, model


def _check_name(name: str) -> None:
    group, _, key = name.partition(".")
    if group == "train" and key in TrainConfig.field_names():
        return
    if group == "model" and key:
        return
    raise ValueError(
        f"search space key {name!r}: use train.<field> (one of {TrainConfig.field_names()}) "
        "or model.<keyword argument>"
    )
