"""Config values of the wrong type are refused at the flow edge, naming the key and the type."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from flows.config import ConfigError, compose, to_group_config, to_search_settings, to_settings
from flows.config_types import checked_values, scalar_types, sequence_type


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=abc", "train.batch_size='abc': expected an integer"),
        ("train.epochs=2.5", "train.epochs=2.5: expected an integer"),
        ("train.use_gpu=maybe", "train.use_gpu='maybe': expected true or false"),
        ("train.lr=fast", "train.lr='fast': expected a number"),
        ("train.pskd.alpha_T=high", "train.pskd.alpha_T='high': expected a number"),
        ("seed=1.5", "seed=1.5: expected an integer"),
        ("seed=abc", "seed='abc': expected an integer"),
        ("model.tiny=no", "model.tiny='no': expected true or false"),
        ("ray.num_cpus=two", "ray.num_cpus='two': expected an integer or null"),
        ("explain.num_samples=[1]", "explain.num_samples=[1]: expected an integer"),
        ("data.feature_shape=[a,b]", "data.feature_shape=['a', 'b']: expected a list of integers"),
        ("data.feature_shape=64", "data.feature_shape=64: expected a list of integers or null"),
        ("explain.checks=5", "explain.checks=5: expected a list of strings"),
    ],
)
def test_a_value_of_the_wrong_type_names_its_key(override, message):
    # each of these used to pass: a str reached a comparison (TypeError), "no" and "maybe"
    # switched a flag on, 1.5 became seed 1
    with pytest.raises(ConfigError) as raised:
        to_settings(compose([override]))
    assert message in str(raised.value)


@pytest.mark.parametrize("cpus", [0, -2])
def test_a_ray_without_cpus_is_refused(cpus):
    # -2 reached ray.init: a traceback and exit 1
    with pytest.raises(ConfigError, match=rf"ray.num_cpus={cpus} \(must be >= 1, or null"):
        to_settings(compose([f"ray.num_cpus={cpus}"]))


@pytest.mark.parametrize("seed", [-1, 2**31])
def test_a_seed_no_seeded_library_takes_is_refused(seed):
    # -1 reached numpy's SeedSequence in the ingest task: a traceback and exit 1
    with pytest.raises(ConfigError, match=rf"seed={seed} \(must be from 0 to 2147483647\)"):
        to_settings(compose([f"seed={seed}"]))
    assert to_settings(compose([f"seed={2**31 - 1}"])).seed == 2**31 - 1


def test_every_wrong_value_of_a_group_is_named_at_once():
    with pytest.raises(ConfigError) as raised:
        to_settings(compose(["train.batch_size=abc", "train.epochs=x"]))
    assert "train.epochs='x'" in str(raised.value) and "train.batch_size='abc'" in str(raised.value)


def test_values_of_the_declared_types_pass():
    # an int is a number (lr=1), budget_s is auto or seconds, a numeric run id names a folder
    settings = to_settings(compose(["train.lr=1", "explain.budget_s=30", "run.id=2026"]))
    assert (settings.train.lr, settings.explain.budget_s, settings.run.id) == (1, 30, "2026")
    assert to_settings(compose(["explain.budget_s=auto"])).explain.budget_s == "auto"


def test_the_search_and_other_groups_are_checked_too():
    with pytest.raises(ConfigError, match=r"search.num_samples=1.5: expected an integer"):
        to_search_settings(compose(["search=asha", "search.num_samples=1.5"]))
    with pytest.raises(ConfigError, match=r"search.retrain='maybe': expected true or false"):
        to_search_settings(compose(["search=asha", "search.retrain=maybe"]))
    from components.pruning.imp_config import PruneConfig

    with pytest.raises(ConfigError, match=r"prune.rounds='x': expected an integer"):
        to_group_config(compose(["prune=default", "prune.rounds=x"]), "prune", PruneConfig)


def test_annotations_name_the_scalar_types_they_allow():
    assert scalar_types("int | None") == (int, type(None))
    assert scalar_types(float | str) == (float, str)
    assert scalar_types("tuple[int, ...]") is None  # not a scalar: the class checks it
    assert scalar_types(dict) is None


@dataclass
class _Inner:
    rate: float = 0.5


@dataclass
class _Outer:
    count: int = 1
    flag: bool = False
    inner: _Inner = field(default_factory=_Inner)


def test_a_bool_is_no_number_and_nested_settings_are_checked():
    assert checked_values(_Outer, {"count": True, "flag": 1}, "g")[1] == [
        "g.count=True: expected an integer",
        "g.flag=1: expected true or false",
    ]
    assert checked_values(_Outer, {"inner": {"rate": "x"}}, "g")[1] == [
        "g.inner.rate='x': expected a number"
    ]
    values = {"count": 3, "inner": {"rate": 2}}
    assert checked_values(_Outer, values, "g") == (values, [])


def test_a_number_given_for_a_name_becomes_its_text():
    # Hydra parses data.label_column=64 as an int; a CSV's header names the column "64"
    settings = to_settings(compose(["data.label_column=64", "run.root=2026"]))
    assert (settings.data.label_column, settings.run.root) == ("64", "2026")
    columns = to_settings(compose(["data.feature_columns=[1,x]"])).data.feature_columns
    assert columns == ("1", "x")
    assert to_settings(compose(["data.drop_columns=[2024]"])).data.drop_columns == ("2024",)


def test_one_name_for_a_list_of_names_is_a_list_of_it():
    from components.continual.config import ContinualConfig
    from components.explain.config import POST_HOC_METHODS
    from components.federated.experiment import FederatedConfig
    from flows.continual import compose_continual
    from flows.federated import compose_federated

    # explain.methods=all is a shorthand the class takes; one feature column is a list column
    assert to_settings(compose(["explain.methods=all"])).explain.methods == POST_HOC_METHODS
    assert to_settings(compose(["data.feature_columns=pixels"])).data.feature_columns == ("pixels",)
    assert to_settings(compose(["data.drop_columns=id"])).data.drop_columns == ("id",)
    assert to_settings(compose(["explain.checks=sanity"])).explain.checks == ("sanity",)
    # once iterated letter by letter: "federated.strategies=['f', 'e', 'd', ...]"
    federated = compose_federated(["federated.strategies=fedavg"])
    assert to_group_config(federated, "federated", FederatedConfig).strategies == ("fedavg",)
    continual = compose_continual(["continual.methods=ncm"])
    assert to_group_config(continual, "continual", ContinualConfig).methods == ("ncm",)


def test_list_annotations_name_their_element_type():
    assert sequence_type("tuple[int, ...] | None") == (int, True)
    assert sequence_type("tuple[str, ...]") == (str, False)
    assert sequence_type("tuple[dict, ...]") is None and sequence_type("int") is None
