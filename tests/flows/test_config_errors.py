"""Overrides Hydra refuses are answered in one line naming the override and the nearest valid
key or option; settings cannot be deleted, model parameters can."""

from __future__ import annotations

import pytest

from flows.config import ConfigError, compose, compose_with_defaults, to_settings
from flows.config_errors import did_you_mean, hydra_string


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.epoch=3"], "train.epoch=3: train has no key 'epoch'; did you mean train.epochs?"),
        (["trian.epochs=3"], "the config has no key 'trian'; did you mean train or tracking?"),
        (["modle=mlp"], "modle=mlp: the config has no key 'modle'; did you mean model?"),
        (
            ["data=image_folder", "data.imagesize=64"],
            "data.imagesize=64: data has no key 'imagesize'; did you mean data.image_size?",
        ),
        (["train.pskd.alpah=1"], "did you mean train.pskd.alpha_T?"),
        (["model=mlpp"], "model=mlpp: there is no conf/model/mlpp.yaml; did you mean mlp?"),
        (["search=ash"], "search=ash: there is no conf/search/ash.yaml; did you mean asha?"),
        # a model parameter is added with a leading +: the hint says so
        (
            ["model=protopnet", "model.params.backbone=resnet18"],
            "model.params has no 'backbone' to change; to add it, write "
            "+model.params.backbone=resnet18",
        ),
        (["data.path"], "cannot parse the override 'data.path': overrides are key=value"),
        (["train.epochs=3", "seed=[1"], "cannot parse the override 'seed=[1'"),
        (["model=mlp", "~model.params.hiden"], "~model.params.hiden: model.params has no 'hiden'"),
        # values Hydra cannot read unquoted: the message shows the quoted override
        (["data.path=/data/Vögel"], "(token recognition error at: 'ö'); quote a value"),
        (["data.path=/data/Vögel"], "\"data.path='/data/Vögel'\""),
        (["data.path=~/loans.csv"], "'~' (a home folder) or non-ASCII letters: \"data.path='~/"),
        (["data.path=/data/a,b"], "a comma makes a list; write data.path=[/data/a,b] for one"),
        (["data.feature_shape=[1,8"], "a list is written [1,8,8]"),
        # a mapping value is merged into the mapping there: its unknown key is the one named
        (["train.pskd={alpa:1}"], "train.pskd={alpa:1}: train.pskd has no key 'alpa'; did you"),
        (
            ["model=protopnet", "model.params={protoypes:3}"],
            "model.params has no key 'protoypes'; to add it, write +model.params.protoypes=...",
        ),
        (
            ["search=asha", "search.space.train.lr={type:choice,values:[1]}"],
            "a mapping is merged into search.space.train.lr, which has no key 'values'; to "
            "replace search.space.train.lr, delete it first: ~search.space.train.lr "
            "'+search.space.train.lr={type:choice,values:[1]}'",
        ),
    ],
)
def test_a_refused_override_is_named_with_the_nearest_valid_one(overrides, message):
    with pytest.raises(ConfigError) as caught:
        compose(overrides)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_no_close_key_lists_the_group_keys_and_no_close_option_lists_the_options():
    with pytest.raises(ConfigError, match=r"train has no key 'zzz' \(train keys: batch_size, "):
        compose(["train.zzz=1"])
    with pytest.raises(ConfigError) as caught:
        compose(["model=qqqq"])
    assert "(choose from: bossnas_net, cbc," in str(caught.value)
    assert "base" not in str(caught.value).split("choose from")[1]


def test_an_added_key_that_is_no_setting_is_named_with_its_group():
    # a + key reaches the settings class: each unknown one is named, nested groups included
    with pytest.raises(ConfigError, match=r"train\.epoch is not a setting of train; did you mean "):
        to_settings(compose(["+train.epoch=3"]))
    with pytest.raises(ConfigError, match=r"did you mean train\.pskd\.alpha_T\?"):
        to_settings(compose(["+train.pskd.alpah=1"]))
    with pytest.raises(ConfigError, match=r"explain\.methds is not a setting of explain"):
        to_settings(compose(["+explain.methds=[lime]"]))


def test_settings_cannot_be_deleted_but_model_parameters_and_search_dimensions_can():
    for override in ("~seed", "~model", "~train.epochs"):
        with pytest.raises(ConfigError, match="only a model parameter or a search dimension"):
            compose([override])
    params = compose(["model=mlp", "+model.params.dropout=0.2", "~model.params.dropout"])
    assert "dropout" not in params.model.params
    sweep = compose_with_defaults(["~search.space.train"], {"search": "random"})
    assert "train" not in sweep.search.space


def test_model_params_must_be_a_mapping():
    with pytest.raises(ConfigError, match=r"model.params=3: expected the model's parameters"):
        to_settings(compose(["model.params=3"]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.drop_columns={a:1}", "data.drop_columns takes a list, not a mapping"),
        ("explain.sanity=[1,2]", "explain.sanity takes a mapping, not a list"),
    ],
)
def test_a_list_for_a_mapping_or_the_reverse_is_named(override, message):
    with pytest.raises(ConfigError) as error:
        compose([override])
    assert str(error.value) == f"{override}: {message} (a list is written [a,b], a mapping {{a:1}})"


def test_did_you_mean_names_the_closest_keys_or_lists_them_all():
    assert did_you_mean("epoch", ["epochs", "lr"], "train") == "; did you mean train.epochs?"
    assert did_you_mean("qq", ["b", "a"], "train") == " (train keys: a, b)"
    assert did_you_mean("qq", []) == ""


@pytest.mark.parametrize("text", ["/data/Vögel 2024", "it's", "a\\", "a\\'b", "x,[y](z)#=", ""])
def test_a_quoted_value_reads_back_as_exactly_its_text(text):
    assert compose(["data=csv", f"data.path={hydra_string(text)}"]).data.path == text


def test_the_suggested_delete_and_add_replaces_a_search_dimension():
    cfg = compose(
        ["search=asha", "~search.space.train.lr", "+search.space.train.lr={type:choice,values:[1]}"]
    )
    assert dict(cfg.search.space.train.lr) == {"type": "choice", "values": [1]}


def test_reused_compositions_hand_out_copies_and_end_with_their_block():
    from flows.config import reused_compositions

    with reused_compositions():
        first = compose(["train.epochs=4"])
        first.train.epochs = 99  # a caller's change stays in its copy
        again = compose(["train.epochs=4"])
        assert again.train.epochs == 4 and again is not first
        assert compose(["train.epochs=5"]).train.epochs == 5
    from flows import config

    assert config._reused is None  # outside the block every call composes anew
