"""Pruning rate as a search dimension (issue 17 item 7): ``sennflow sweep prune=default`` runs
lottery rounds in every trial at its sampled ``prune.rate``, ranks trials by their last ticket,
and retrains the best through the prune flow's Ray Train rounds; the refused combinations are
config errors before anything trains."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from components.training.checkpoint import ModelSpec
from flows.config import ConfigError, to_search_settings, to_settings
from flows.sweep import _check_prune, compose_sweep, sweep

RATES = (0.3, 0.7)
RATE_DIMENSION = "+search.space.prune.rate={type:choice,values:[0.3,0.7]}"


def global_remaining(rate: float) -> float:
    """The share of the tiny MLP's prunable weights one global round at ``rate`` keeps."""
    model = ModelSpec("mlp", (1, 8, 8), 10, tiny=True).build()
    total = sum(m.weight.numel() for m in model.modules() if hasattr(m, "weight"))
    return (total - math.ceil(rate * total)) / total


@pytest.mark.prefect
@pytest.mark.ray
@pytest.mark.slow
def test_each_trial_prunes_at_its_rate_and_the_best_rate_is_retrained_as_lottery_rounds(
    prefect_harness, ray_session, digits_dataset, tmp_path
):
    result = sweep(
        overrides=[
            "search=random",
            "search.num_samples=2",
            "search.seed=1",  # its two random trials sample different rates
            "~search.space.train",  # random search's own lr and weight_decay dimensions
            RATE_DIMENSION,
            "experiment=tiny",
            "explain.methods=[gradients]",  # the retrain's explain stage is not what is tested
            "model=mlp",
            "train.epochs=2",
            "prune=default",
            "prune.rounds=1",
            "prune.scope=global",
            "prune.control=false",
            f"run.root={tmp_path / 'runs'}",
            f"run.cache_dir={Path(digits_dataset).parent}",
        ]
    )
    run = Path(result.run_dir)
    trials = json.loads((run / "search.json").read_text())["trials"]
    by_rate = {row["config"]["prune.rate"]: row for row in trials}
    assert set(by_rate) == set(RATES)
    for rate, row in by_rate.items():
        # each trial pruned at its own rate; its one report is the pruned ticket, not round 0
        assert row["remaining"] == pytest.approx(global_remaining(rate), abs=1e-12)
        assert row["epochs"] == 1
    best = min(by_rate, key=lambda rate: by_rate[rate]["val_loss"])
    assert result.best_config["prune.rate"] == best

    state = json.loads((run / "prune" / "state.json").read_text())
    assert state["setup"]["config"]["rate"] == best
    ticket = state["rounds"][-1]
    assert ticket["remaining"] == pytest.approx(global_remaining(best), abs=1e-12)
    # same seed and values: the Ray Train rounds reproduce the best trial's in-process rounds
    assert ticket["ticket"]["val_loss"] == pytest.approx(by_rate[best]["val_loss"], abs=1e-3)
    assert result.headline["ticket_remaining"] == ticket["remaining"]
    assert result.headline["test_accuracy"] == pytest.approx(ticket["ticket"]["test_accuracy"])
    assert json.loads((run / "prune.json").read_text())["rounds"] == state["rounds"]
    report = (run / "report.html").read_text()
    assert "Lottery tickets" in report and "<th>remaining</th>" in report  # trials table column


def _prune_check(*extra: str) -> None:
    cfg = compose_sweep(list(extra))
    _check_prune(cfg, to_settings(cfg), to_search_settings(cfg))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((RATE_DIMENSION,), r"prune.rate: pruning dimensions and metrics need a prune=default"),
        (
            ("search=optuna", "search.objectives=[val_accuracy,remaining]"),
            "remaining: pruning dimensions",
        ),
        (("prune=default", "search=pbt"), "search.method=pbt does not run lottery rounds"),
        (("prune=default", "search=darts"), "search.method=darts does not run lottery rounds"),
        (("prune=default", "train.num_workers=2"), "needs train.num_workers=1"),
        (("prune=default", "ssl=jepa"), "either prunes or pre-trains"),
        (
            ("prune=default", "train.epochs=3", "prune.rewind_epoch=3"),
            "prune.rewind_epoch=3 must be below",
        ),
    ],
)
def test_refused_pruning_sweeps_are_config_errors(extra, message):
    with pytest.raises(ConfigError, match=message):
        _prune_check("search=random", *extra)
