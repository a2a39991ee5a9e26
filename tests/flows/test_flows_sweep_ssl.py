"""Searching over the training regimes' knobs (issue 17 item 7): ``ssl.*`` and
``train.pskd.alpha_T`` dimensions of ``sennflow sweep ssl=<objective>``, and pre-training as a
stage of a pipeline run; the refused combinations as config errors without training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.training.checkpoint import load_state
from flows.config import ConfigError, compose, to_search_settings, to_settings
from flows.pretrain import stage_config
from flows.sweep import _check_ssl, compose_sweep, sweep

WIDTHS = (16, 32)
ALPHAS = (0.3, 0.7)
SPACE = [
    "~search.space.train",  # random search's own lr and weight_decay dimensions
    "+search.space.ssl.projector_width={type:choice,values:[16,32]}",
    "+search.space.train.pskd.alpha_T={type:choice,values:[0.3,0.7]}",
]


@pytest.mark.prefect
@pytest.mark.ray
@pytest.mark.slow
def test_each_trial_pretrains_at_its_width_and_distils_at_its_alpha_then_retrains_via_the_stage(
    prefect_harness, ray_session, digits_dataset, tmp_path
):
    result = sweep(
        overrides=[
            "search=random",
            "search.num_samples=2",
            "experiment=tiny",
            "explain.methods=[gradients]",  # the retrain's explain stage is not what is tested
            "model=mlp",
            "train.epochs=1",
            "train.self_distill=pskd",
            "ssl=barlow_twins",
            "ssl.epochs=1",
            "search.seed=1",  # its two random trials sample different widths
            *SPACE,
            f"run.root={tmp_path / 'runs'}",
            f"run.cache_dir={Path(digits_dataset).parent}",
        ]
    )
    run = Path(result.run_dir)
    experiment = Path(json.loads((run / "search.json").read_text())["experiment_path"])
    widths = set()
    for trial_dir in sorted(experiment.glob("fit_trial_*")):
        row = json.loads((trial_dir / "result.json").read_text().splitlines()[-1])
        width, alpha_T = row["config"]["ssl.projector_width"], row["config"]["train.pskd.alpha_T"]  # noqa: N806
        widths.add(width)
        # the projector the trial trained was this wide; its fit ran PS-KD at its alpha_T
        assert row["ssl_projector_width"] == width and row["ssl_loss"] is not None
        assert row["pskd_alpha_T"] == alpha_T
        model = json.loads(next(trial_dir.glob("checkpoint_*/model.json")).read_text())
        encoder = Path(model["encoder_from"])  # the trial's model started from its own encoder
        assert json.loads((encoder / "ssl.json").read_text())["projector_width"] == width
    assert widths == set(WIDTHS)

    best = result.best_config["ssl.projector_width"]
    stage = run / "ssl" / "checkpoints" / "best"
    assert json.loads((stage / "ssl.json").read_text())["projector_width"] == best
    retrained = json.loads((run / "checkpoints" / "best" / "model.json").read_text())
    assert retrained["encoder_from"] == str(stage)
    # same seed, same values: the Ray Train stage and fit reproduce the best trial's in-process run
    retrained_loss = load_state(run / "checkpoints" / "best")["fit_state"]["best_val_loss"]
    assert retrained_loss == pytest.approx(result.headline["best_val_loss"], abs=1e-3)
    report = (run / "report.html").read_text()
    assert report.index("Self-supervised pre-training") < report.index("<h2>Training")


def _search_check(*extra: str) -> None:
    cfg = compose_sweep(list(extra))
    _check_ssl(cfg, to_settings(cfg), to_search_settings(cfg))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), r"ssl\.\* dimensions need an ssl=<objective> group"),
        (("ssl=jepa", "search=stn"), "search.method=stn does not pre-train"),
        (("ssl=jepa", "search=pbt"), "search.method=pbt does not pre-train"),
        (("ssl=jepa", "train.num_workers=2"), "needs train.num_workers=1"),
    ],
)
def test_refused_ssl_search_dimensions_are_config_errors(extra, message):
    width = "+search.space.ssl.projector_width={type:choice,values:[16,32]}"
    with pytest.raises(ConfigError, match=message):
        _search_check("search=random", width, *extra)


def test_an_ssl_group_with_a_method_that_trains_its_own_networks_is_a_config_error():
    with pytest.raises(ConfigError, match=r"ssl=<objective>: search.method=darts"):
        _search_check("ssl=barlow_twins", "search=darts")


def test_an_unknown_ssl_search_key_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match=r"ssl\.<field> must be one of"):
        to_search_settings(compose_sweep(["+search.space.ssl.views={type:choice,values:[1]}"]))


def test_pretraining_stage_with_other_starting_weights_is_a_config_error(tmp_path):
    cfg = compose(["ssl=barlow_twins", f"+model.params.pretrained={tmp_path / 'w.pth'}"])
    spec = to_settings(cfg).model_spec({"feature_shape": [64], "num_classes": 10})
    with pytest.raises(ConfigError, match="ssl=barlow_twins pre-trains .* choose one"):
        stage_config(cfg, spec)
