"""A two-objective sweep (``search.objectives``) end to end: Optuna's multi-objective sampler
through Ray Tune, the Pareto front of the trials, the picked trial, and the report's front."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.sweep import sweep
from sennflow.cli import main

OBJECTIVES = ("val_accuracy", "faithfulness")


def dominates(a: dict, b: dict) -> bool:
    """Both objectives higher is better."""
    return all(a[k] >= b[k] for k in OBJECTIVES) and any(a[k] > b[k] for k in OBJECTIVES)


@pytest.mark.prefect
@pytest.mark.ray
@pytest.mark.slow
def test_accuracy_against_faithfulness_sweep_picks_a_front_point_and_draws_the_front(
    prefect_harness, ray_session, tmp_path
):
    result = sweep(
        overrides=[
            "experiment=tiny",
            f"run.root={tmp_path / 'runs'}",
            f"run.cache_dir={tmp_path / 'cache'}",
            "search=optuna",
            "model=mlp",
            "train.epochs=1",
            "search.num_samples=2",
            "search.max_concurrent=2",
            "search.retrain=false",
            f"search.objectives=[{','.join(OBJECTIVES)}]",
            "search.pick=knee",
            "+search.space.model.dropout={type:uniform,low:0.0,high:0.6}",
        ]
    )
    run_dir = Path(result.run_dir)
    search = json.loads((run_dir / "search.json").read_text())
    trials, pareto = search["trials"], search["pareto"]
    assert len(trials) == 2 and all(t["faithfulness"] is not None for t in trials)
    by_id = {t["trial"]: t for t in trials}
    front = [by_id[name] for name in pareto["front"]]
    picked = by_id[pareto["picked"]]
    # The front is exactly the non-dominated trials, and the retrained trial is on it.
    assert not any(dominates(t, f) for f in front for t in trials)
    assert all(any(dominates(f, t) for f in front) for t in trials if t not in front)
    assert picked in front and result.best_config == picked["config"]
    assert result.headline["picked_faithfulness"] == picked["faithfulness"]
    html = (run_dir / "report.html").read_text()
    assert (run_dir / "figures" / "search_pareto.png").is_file()
    assert "Pareto front" in html and f"{pareto['picked']} (picked)" in html


def test_an_unknown_metric_exits_2_listing_the_metrics(capsys, tmp_path):
    assert main(["sweep", "search.metric=val_acc", f"run.root={tmp_path}"]) == 2
    assert "choose one of ['val_loss', 'val_accuracy'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
