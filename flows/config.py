"""Hydra composition and its conversion to the typed settings the tasks take.

The flows are the only layer that sees Hydra/OmegaConf: everything below receives frozen
dataclasses (``DataSpec``, ``TrainConfig``, ...), never a config object.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flows.config_errors import OPEN_MAPPINGS, override_key, override_problem
from flows.config_types import checked_values, scalar_problem

if TYPE_CHECKING:
    from components.data.spec import DataSpec
    from components.explain.config import ExplainConfig
    from components.search.sweep_config import SweepConfig
    from components.tracking.config import TrackingConfig
    from components.training.checkpoint import ModelSpec
    from components.training.config import TrainConfig

# The source tree's conf/; a wheel installs it as sennflow/conf beside this package.
_SOURCE_CONF = Path(__file__).resolve().parent.parent / "conf"
CONF_DIR = (
    _SOURCE_CONF
    if (_SOURCE_CONF / "config.yaml").is_file()
    else _SOURCE_CONF.parent / "sennflow" / "conf"
)
# The search method of ``sennflow sweep`` when ``search=<method>`` is not chosen.
DEFAULT_SEARCH = "asha"
# The largest seed every seeded library takes (scikit-learn's random_state is below 2**32, and
# stages derive seeds such as seed + 1 from it).
MAX_SEED = 2**31 - 1


class ConfigError(ValueError):
    """An override or config value is invalid; the message names the key."""


# run.id names a folder under run.root: no separators, no "..", nothing absolute.
_RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# an interpolation not already escaped with a backslash
_INTERPOLATION = re.compile(r"(?<!\\)\$\{")


def check_run_id(run_id) -> str | None:
    """``run_id`` as the folder name it becomes (None: choose one); :class:`ConfigError` unless
    it is a safe name (letters, digits, ``-``, ``_``, ``.``; no ``..``), so no run is written
    outside ``run.root``."""
    if run_id is None:
        return None
    if isinstance(run_id, int) and not isinstance(run_id, bool):
        run_id = str(run_id)
    safe = isinstance(run_id, str) and _RUN_ID.fullmatch(run_id) and ".." not in run_id
    if not safe or run_id == ".":
        raise ConfigError(
            f"invalid run.id={run_id!r}: use at most 128 letters, digits, '-', '_' or '.' "
            "(no '..', no '/'); it names a folder under run.root"
        )
    return run_id


@dataclass(frozen=True)
class RunSettings:
    """Where outputs go and which Ray to use."""

    root: str = "runs"
    id: str | None = None
    cache_dir: str = ".cache/datasets"
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    ray_storage_path: str | None = None


@dataclass(frozen=True)
class ModelChoice:
    """The ``model`` group: a registered model's name, size and parameters."""

    name: str
    tiny: bool = False
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FlowSettings:
    """A flow's composed config, validated and typed: what every flow reads of it (the
    flow-specific groups, ``search``, ``federated``, ``continual``, are converted on their own
    with :func:`to_search_settings` and :func:`to_group_config`)."""

    data: DataSpec
    model: ModelChoice
    train: TrainConfig
    explain: ExplainConfig
    run: RunSettings
    seed: int
    tracking: TrackingConfig

    def model_spec(self, data_meta: dict) -> ModelSpec:
        """The configured model for the ingested data's input shape and classes."""
        from components.training.checkpoint import ModelSpec

        return ModelSpec.configured(
            self.model.name,
            data_meta["feature_shape"],
            data_meta["num_classes"],
            tiny=self.model.tiny,
            params=self.model.params,
        )


# The configs composed inside ``reused_compositions()``, by their overrides; None outside.
_reused: dict[tuple[str, ...], object] | None = None


@contextlib.contextmanager
def reused_compositions():
    """Within, :func:`compose` composes each list of overrides once and returns copies after.
    The CLI checks a command's config before anything starts (so a typo answers in a second,
    with no Prefect server and no failed flow run) and the flow still composes it once."""
    global _reused
    outer, _reused = _reused, {} if _reused is None else _reused
    try:
        yield
    finally:
        _reused = outer


def compose(overrides: list[str] | tuple[str, ...] = ()):
    """Compose ``conf/config.yaml`` with Hydra overrides; :class:`ConfigError` on bad input."""
    key = tuple(overrides)
    if _reused is not None and key in _reused:
        return copy.deepcopy(_reused[key])
    cfg = _hydra_compose(overrides)
    if _reused is not None:
        _reused[key] = copy.deepcopy(cfg)
    return cfg


def _hydra_compose(overrides: list[str] | tuple[str, ...]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _check_deletions(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="sennflow"):
            return hydra_compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        without = functools.partial(_composed_without, list(overrides))
        raise ConfigError(override_problem(err, overrides, without)) from err
    finally:
        GlobalHydra.instance().clear()


def _check_deletions(overrides) -> None:
    """A ``~key`` override may delete a model parameter or a search dimension (keys a user
    adds); a setting the flows read cannot be deleted, only set."""
    for override in overrides:
        key = override_key(override)
        if override.startswith("~") and not key.startswith(tuple(f"{m}." for m in OPEN_MAPPINGS)):
            raise ConfigError(
                f"{override}: only a model parameter or a search dimension can be deleted "
                f"(~model.params.<name>, ~search.space.<name>); to use {key}'s default, leave "
                "out the override"
            )


def _composed_without(overrides: list[str], key: str) -> dict | None:
    """The config, as plain data, composed without the overrides of ``key``'s top-level group
    (where the refused one is), or None when even that cannot be composed."""
    from omegaconf import OmegaConf

    top = key.split(".", 1)[0]
    kept = [o for o in overrides if override_key(o).split(".", 1)[0] != top]
    if key != top:  # keep the group's choice, e.g. model=protopnet for model.params.x
        kept += [o for o in overrides if override_key(o) == top]
    try:
        return OmegaConf.to_container(compose(kept), resolve=False)
    except ConfigError:
        return None


def compose_with_defaults(overrides: list[str], defaults: dict[str, str]):
    """:func:`compose` with ``group=option`` of ``defaults`` added for each group the
    overrides do not choose (e.g. ``{"federated": "default"}``)."""
    chosen = {override_key(o) for o in overrides}
    extra = [f"{g}={v}" for g, v in defaults.items() if g not in chosen]
    return compose([*extra, *overrides])


def to_yaml(cfg) -> str:
    """The config as saved in every run folder, shown in reports and logged to MLflow: resolved,
    except that ``${oc.env:...}`` stays as written (the environment's values are never saved),
    and with the credentials of URLs masked (:func:`components.redact.redact`). The run itself
    uses the fully resolved values (:func:`to_settings`)."""
    import yaml
    from omegaconf import OmegaConf

    from components.redact import redact

    raw = OmegaConf.to_container(cfg, resolve=False)
    kept = OmegaConf.create(_map_strings(raw, _keep_env_unresolved))
    resolved = redact(OmegaConf.to_container(kept, resolve=True))
    return yaml.safe_dump(resolved, default_flow_style=False, allow_unicode=True, sort_keys=False)


def changed_keys(a, b) -> dict[str, tuple]:
    """The dotted keys whose values differ between configs ``a`` and ``b`` (either may lack
    the key, shown as None), sorted, each with its two values."""
    from omegaconf import OmegaConf

    from components.tracking.params import flatten

    flat_a = flatten(OmegaConf.to_container(a, resolve=False))
    flat_b = flatten(OmegaConf.to_container(b, resolve=False))
    keys = sorted(k for k in flat_a.keys() | flat_b.keys() if flat_a.get(k) != flat_b.get(k))
    return {k: (flat_a.get(k), flat_b.get(k)) for k in keys}


def as_literal(values):
    """Nested plain data with every ``${...}`` escaped: an untrusted config (a downloaded run
    folder's) is data, never interpolated, so it cannot read the environment."""
    return _map_strings(values, _escape)


def _keep_env_unresolved(text: str) -> str:
    return _escape(text) if "oc.env:" in text else text


def _escape(text: str) -> str:
    return _INTERPOLATION.sub(r"\\${", text)


def _map_strings(values, fn):
    if isinstance(values, str):
        return fn(values)
    if isinstance(values, dict):
        return {key: _map_strings(value, fn) for key, value in values.items()}
    if isinstance(values, list):
        return [_map_strings(value, fn) for value in values]
    return values


def _check_storage_path(path) -> None:
    from components.data.staging import storage_problem

    problem = storage_problem(path)
    if problem:
        raise ConfigError(f"invalid ray.storage_path={path!r}: {problem}")


def to_settings(cfg) -> FlowSettings:
    """Convert a composed config to typed settings; ``ConfigError`` names the offending key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    from components.data.spec import DataSpec
    from components.explain.config import ExplainConfig
    from components.training.config import TrainConfig

    try:
        raw = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        hint = "set it as an override, e.g. data.path=/path/to/file"
        raise ConfigError(f"missing required config value {err.full_key}: {hint}") from err
    except OmegaConfBaseException as err:  # e.g. ${oc.env:NAME} of an unset variable
        raise ConfigError(f"cannot resolve the config: {err}") from err
    seed = _scalar("seed", raw["seed"], int)
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"invalid config: seed={seed} (must be from 0 to {MAX_SEED})")
    model = raw["model"]
    _scalar("model.tiny", model["tiny"], bool)
    if not isinstance(model.get("params") or {}, dict):
        raise ConfigError(
            f"model.params={model['params']!r}: expected the model's parameters as a mapping; "
            "set one with +model.params.<name>=<value>"
        )
    data_values = _resolve_normalization(_tupled(raw["data"]), model.get("params") or {})
    data = _build("data", DataSpec, data_values, seed=seed)
    train = _build("train", TrainConfig, raw["train"], seed=seed)
    explain = _build("explain", ExplainConfig, raw["explain"], seed=seed)
    run = _run_settings(raw["run"], raw["ray"])
    _check_storage_path(run.ray_storage_path)
    return FlowSettings(
        data=data,
        model=ModelChoice(
            name=model["name"],
            tiny=model["tiny"],
            params=_resolve_genotype(dict(model.get("params") or {})),
        ),
        train=train,
        explain=explain,
        run=run,
        seed=seed,
        tracking=to_tracking_config(raw.get("tracking")),
    )


def _run_settings(run: dict, ray: dict) -> RunSettings:
    values = {"root": run["root"], "id": check_run_id(run["id"]), "cache_dir": run["cache_dir"]}
    values |= {f"ray_{key}": ray[key] for key in ("address", "num_cpus", "storage_path")}
    values, problems = checked_values(RunSettings, values, "run")
    if problems:  # named by their config keys: ray.num_cpus, not run.ray_num_cpus
        raise ConfigError("invalid config: " + "; ".join(problems).replace("run.ray_", "ray."))
    cpus = values["ray_num_cpus"]
    if cpus is not None and cpus < 1:
        raise ConfigError(
            f"invalid config: ray.num_cpus={cpus} (must be >= 1, or null: every CPU here)"
        )
    return RunSettings(**values)


def _scalar(key: str, value, kind: type):
    """``value`` when it is a ``kind`` (an int is a float), else ``ConfigError`` naming ``key``."""
    problem = scalar_problem(key, value, (kind,))
    if problem:
        raise ConfigError(f"invalid config: {problem}")
    return value


def to_tracking_config(raw: dict | None) -> TrackingConfig:
    """The ``tracking`` group as ``TrackingConfig`` (runs saved before tracking existed have
    none: tracking off); ``ConfigError`` names the offending key."""
    from components.tracking.config import TrackingConfig

    return _build("tracking", TrackingConfig, raw or {})


@dataclass(frozen=True)
class SearchSettings:
    """The ``search`` group, typed: how to sweep and over what."""

    sweep: SweepConfig
    space: dict
    stn: dict
    darts: dict
    retrain: bool
    history: bool = False
    alert_drop: float | None = None
    bossnas: dict = field(default_factory=dict)
    enas: dict = field(default_factory=dict)


def to_search_settings(cfg) -> SearchSettings:
    """The composed ``search`` group, validated; ``ConfigError`` names the offending key."""
    from omegaconf import OmegaConf

    from components.search.algorithms import pb2_bounds
    from components.search.bossnas import bossnas_config
    from components.search.darts import DartsConfig
    from components.search.enas import EnasConfig
    from components.search.space import tune_space
    from components.search.stn import STNConfig
    from components.search.sweep_config import SweepConfig

    if cfg.get("search") is None:
        raise ConfigError("no search method chosen: add search=<method> (see conf/search)")
    raw = OmegaConf.to_container(cfg.search, resolve=True)
    space, stn, darts = raw.pop("space") or {}, raw.pop("stn") or {}, raw.pop("darts") or {}
    bossnas = raw.pop("bossnas", None) or {}
    enas = raw.pop("enas", None) or {}
    retrain = _scalar("search.retrain", raw.pop("retrain"), bool)
    history, alert_drop = _history_settings(raw.pop("history", False), raw.pop("alert_drop", None))
    if alert_drop is not None and not retrain:
        raise ConfigError("search.alert_drop needs search.retrain=true: it compares test accuracy")
    sweep = _build("search", SweepConfig, raw)
    _build("search.stn", STNConfig, _tupled(stn))
    _build("search.darts", DartsConfig, {k: v for k, v in darts.items() if k != "num_candidates"})
    _build("search.bossnas", bossnas_config, {"settings": bossnas})  # takes the mapping
    _build("search.enas", EnasConfig, enas)
    try:
        tune_space(space)
        if sweep.method == "pb2":
            pb2_bounds(space)  # PB2's explore needs a [low, high] for every dimension
    except ValueError as err:
        raise ConfigError(f"invalid search.space: {err}") from err
    return SearchSettings(
        sweep=sweep,
        space=space,
        stn=stn,
        darts=darts,
        bossnas=bossnas,
        enas=enas,
        retrain=retrain,
        history=history,
        alert_drop=alert_drop,
    )


def _history_settings(history, alert_drop) -> tuple[bool, float | None]:
    """``search.history`` (a bool) and ``search.alert_drop`` (null, or a number >= 0 that
    needs the history to compare against)."""
    if not isinstance(history, bool):
        raise ConfigError(f"search.history must be true or false, got {history!r}")
    if alert_drop is None:
        return history, None
    if isinstance(alert_drop, bool) or not isinstance(alert_drop, int | float) or alert_drop < 0:
        raise ConfigError(
            f"search.alert_drop must be null or a number >= 0 (accuracy points), got {alert_drop!r}"
        )
    if not history:
        raise ConfigError("search.alert_drop needs search.history=true: it compares past nights")
    return history, float(alert_drop)


def _resolve_genotype(params: dict) -> dict:
    """``genotype`` / ``backbone_genotype`` given as a path: read the JSON file it names."""
    import json

    for key in ("genotype", "backbone_genotype", "architecture"):
        value = params.get(key)
        if not isinstance(value, str):
            continue
        path = Path(value)
        try:
            params[key] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(
                f"model.params.{key}={value!r}: cannot read a genotype JSON file there ({err})"
            ) from err
    return params


def _resolve_normalization(data: dict, model_params: dict) -> dict:
    """``data.normalization=auto``: ImageNet statistics for a pretrained trunk (what its weights
    were trained with), the dataset's own otherwise."""
    if data.get("normalization") == "auto":
        pretrained = model_params.get("pretrained")
        data = {**data, "normalization": "imagenet" if pretrained else "dataset"}
    return data


def _tupled(values: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def _build(group: str, cls, values: dict, **extra):
    values, problems = checked_values(cls, values, group)
    if problems:
        raise ConfigError(f"invalid {group} config: " + "; ".join(problems))
    try:
        return cls(**values, **extra)
    except (TypeError, ValueError) as err:
        message = str(err).replace(f"{cls.__name__}.", f"{group}.")
        prefix = "" if message.startswith("invalid ") else f"invalid {group} config: "
        raise ConfigError(prefix + message) from err


def to_group_config(cfg, group: str, cls, default: str = "default"):
    """The composed ``group`` (e.g. ``federated``) as ``cls``; ``ConfigError`` names the key.

    Nested mappings stay dicts (``cls`` converts them); lists become tuples.
    """
    from omegaconf import OmegaConf

    if cfg.get(group) is None:
        raise ConfigError(f"no {group} config chosen: add {group}={default} (see conf/{group})")
    return _build(group, cls, _tupled(OmegaConf.to_container(cfg[group], resolve=True)))
